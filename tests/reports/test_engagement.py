"""Engagement in the report (DESIGN §8): per channel and arm, candidates sent -> delivered ->
opened -> clicked -> responded, shadowed apart, bounces, complaints, unsubscribes; clicks are
touches in the attribution. A store seeded with outbox rows, engagement events and responses;
every expected number below is worked out by hand from the seed, in the comments."""

from __future__ import annotations

import json
import re

import pyarrow as pa
import pytest

from reports import charts
from reports.data import STAGES, load
from reports.html import main
from stores.base import CANDIDATE_COLUMNS
from stores.ports import Role
from stores.spec import open_store

DAY = "2026-11-01"
PROGRAM = "events"
ARMS = {"C1": "A", "C2": "A", "C6": "A", "C8": "A", "C0": "A",
        "C3": "B", "C4": "B", "C5": "B", "C7": "B"}  # fmt: skip


def at(hhmm: str, day: str = DAY) -> str:
    return f"{day}T{hhmm}:00Z"


# (customer, channel, status, sent at): one outbox row each, key f"{customer}-{channel}".
OUTBOX = [
    ("C1", "email", "sent", at("10:00")), ("C1", "in_app", "sent", at("09:00")),
    ("C2", "email", "sent", at("10:00")),
    ("C3", "email", "sent", at("10:00")),
    ("C4", "email", "sent", at("10:00")),
    ("C5", "email", "shadowed", None),  # a rehearsal: reached nobody
    ("C6", "email", "sent", at("08:00")), ("C6", "sms", "sent", at("10:00")),
    ("C7", "in_app", "sent", at("09:00")),
    ("C8", "email", "sent", at("10:00")),
    ("C8", "in_app", "suppressed", None),
    ("C0", "email", "sent", at("10:00", "2026-10-31")),  # the day before's cohort
]  # fmt: skip
# (customer, channel, event, at, event_id)
EVENTS = [
    ("C1", "email", "delivered", at("10:01"), ""), ("C1", "email", "opened", at("11:00"), "1"),
    ("C1", "email", "opened", at("11:02"), "2"),  # opened twice: one candidate
    ("C1", "email", "clicked", at("11:05"), "u"),
    ("C2", "email", "clicked", at("10:30"), "u"),  # a click alone: delivered and opened too
    ("C3", "email", "bounced", at("10:01"), ""),
    ("C4", "email", "delivered", at("10:01"), ""), ("C4", "email", "opened", at("12:00"), ""),
    ("C4", "email", "complained", at("13:00"), ""), ("C4", "email", "unsubscribed", at("13:01"), ""),  # fmt: skip
    ("C5", "email", "clicked", at("11:00"), "u"),  # about a shadowed row: never a touch
    ("C6", "sms", "delivered", at("10:01"), ""), ("C6", "email", "clicked", at("15:00"), "u"),
    ("C7", "in_app", "clicked", at("09:30"), "u"),
    ("C8", "email", "delivered", at("10:02"), ""),
    ("C0", "email", "delivered", at("10:01", "2026-10-31"), ""),
]  # fmt: skip
# customer -> first response
RESPONSES = {"C1": at("12:00"), "C2": at("09:00"), "C5": at("12:00"), "C6": at("20:00"),
             "C7": at("10:00"), "C0": at("12:00", "2026-10-31")}  # fmt: skip


def _candidate(customer: str) -> dict:
    created = at("01:00", "2026-10-31" if customer == "C0" else DAY)
    return {
        "program": PROGRAM, "customer_id": customer, "subject_type": "event",
        "subject_id": "S", "action": "attend", "context": "{}", "score": 0.5,
        "model_id": f"m_{ARMS[customer]}", "treatment": ARMS[customer], "created_at": created,
        "expires_at": "2026-12-01T00:00:00Z", "deliver_after": created, "status": "live",
    }  # fmt: skip


@pytest.fixture
def spec(tmp_path) -> str:
    spec = "sqlite:///" + str(tmp_path / "ceap.db")
    store = open_store(spec)
    rows = [_candidate(c) for c in ARMS]
    store.upsert_candidates(pa.table({c: [r[c] for r in rows] for c in CANDIDATE_COLUMNS}))
    store.connection.executemany(
        "INSERT INTO outbox (program, customer_id, subject_id, channel, step, send_after, status, "
        "idempotency_key, sent_at, updated_at, created_at) VALUES (?, ?, 'S', ?, ?, ?, ?, ?, ?, ?, ?)",
        [(PROGRAM, c, ch, ch, DAY, st, f"{c}-{ch}", sent, sent or at("10:00"), DAY)
         for c, ch, st, sent in OUTBOX],
    )  # fmt: skip
    events = [
        {"program": PROGRAM, "customer_id": c, "subject_id": "S", "channel": ch, "step": ch,
         "idempotency_key": f"{c}-{ch}", "event": ev, "at": t, "detail": None, "event_id": eid}
        for c, ch, ev, t, eid in EVENTS
    ]  # fmt: skip
    events.append({**events[0], "idempotency_key": "no-such-row", "event": "clicked"})  # ignored
    assert all(store.record_engagement(events))
    store.connection.executemany(
        "INSERT INTO responses VALUES (?, ?, 'S', 'null', ?, ?)",
        [(PROGRAM, c, t, f"r-{c}") for c, t in RESPONSES.items()],
    )
    store.close()
    return spec


def engagement(data) -> dict:
    return {
        (e["channel"], e["treatment"]): tuple(e[k] for k in (*STAGES, "shadowed", "bounced",
                                                              "complained", "unsubscribed"))
        for e in data.engagement
    }  # fmt: skip


# By hand, for the cohort of DAY (C1-C8; C0 is the day before's):
EXPECTED = {  # sent, delivered, opened, clicked, responded, shadowed, bounced, complained, unsub
    # C1 C2 C6 C8 sent; C1 delivered, C2 and C6 only clicked (so delivered and opened), C8
    # delivered; C1, C2, C6 opened and clicked; C1 (12:00 >= 10:00) and C6 (20:00 >= 08:00)
    # responded after their first email, C2 (09:00) before it.
    ("email", "A"): (4, 4, 3, 3, 2, 0, 0, 0, 0),
    # C3 C4 sent; C3 only bounced; C4 delivered, opened, complained, unsubscribed; no response
    # after; C5 shadowed (its click counts nowhere).
    ("email", "B"): (2, 1, 1, 0, 0, 1, 1, 1, 1),
    ("in_app", "A"): (1, 0, 0, 0, 1, 0, 0, 0, 0),  # C1 at 09:00, answered 12:00; C8 suppressed
    ("in_app", "B"): (1, 1, 1, 1, 1, 0, 0, 0, 0),  # C7 clicked 09:30, answered 10:00
    ("sms", "A"): (1, 1, 0, 0, 1, 0, 0, 0, 0),  # C6 at 10:00, delivered, answered 20:00
}


def test_engagement_per_channel_and_arm_by_hand(spec):
    store = open_store(spec)
    data = load(store, PROGRAM, DAY, "now")
    store.close()

    assert engagement(data) == EXPECTED
    assert {e["program"] for e in data.engagement} == {PROGRAM}
    # The existing per-channel numbers are unchanged by events: touched = sent candidates.
    channels = {c["channel"]: (c["touched"], c["responses"], c["shadowed"]) for c in data.channels}
    assert channels == {"email": (6, 2, 1), "in_app": (2, 2, 0), "sms": (1, 1, 0)}


def test_clicks_are_touches_in_the_attribution(spec):
    """Responses of the cohort: C1, C2, C5, C6, C7. C1: in_app 09:00, email 10:00, email click
    11:05 <= 12:00: last email, multi {email, in_app}. C2 answered at 09:00 before any touch,
    C5 was only shadowed (its click is no touch): unattributed. C6: email 08:00, sms 10:00,
    email click 15:00 <= 20:00: last email (sms without the click), multi {email, sms}. C7:
    in_app 09:00 and its click 09:30: in_app."""
    store = open_store(spec)
    data = load(store, PROGRAM, DAY, "now")
    store.close()

    assert (data.responses, data.attributed, data.multi_touch_responses) == (5, 3, 2)
    credit = {a["channel"]: (a["last_touch"], a["multi_touch"]) for a in data.attribution}
    assert credit == {"email": (2, 1.0), "in_app": (1, 1.5), "sms": (0, 0.5)}


class WithoutFeedback:
    """The store, as a backend without the delivery feedback role."""

    roles = frozenset(Role) - {Role.FEEDBACK}

    def __init__(self, spec: str) -> None:
        self._inner = open_store(spec)

    def table(self, name: str) -> pa.Table:
        assert name != "engagement_events", "read the events of a store without feedback"
        return self._inner.table(name)

    def close(self) -> None:
        self._inner.close()


def test_a_store_without_feedback_reports_sends_and_responses_only(spec):
    store = WithoutFeedback(spec)
    data = load(store, PROGRAM, DAY, "now")
    store.close()

    no_events = {
        key: (sent, 0, 0, 0, responded, shadowed, 0, 0, 0)
        for key, (sent, _, _, _, responded, shadowed, *_) in EXPECTED.items()
    }
    assert engagement(data) == no_events
    # Without C6's click, its last touch is sms (10:00 after email 08:00).
    credit = {a["channel"]: (a["last_touch"], a["multi_touch"]) for a in data.attribution}
    assert credit == {"email": (1, 1.0), "in_app": (1, 1.5), "sms": (1, 0.5)}


def test_without_a_day_the_earlier_cohort_counts_too(spec):
    store = open_store(spec)
    data = load(store, PROGRAM, None, "now")
    store.close()
    # C0 (arm A): email sent and delivered on the day before, answered 2 h after.
    assert engagement(data)[("email", "A")] == (5, 5, 3, 3, 3, 0, 0, 0, 0)


def test_html_shows_the_engagement_table_and_chart(spec, tmp_path):
    out = tmp_path / "r.html"
    assert main(["--program", PROGRAM, "--date", DAY, "--output", str(out), "--store", spec]) == 0
    html = out.read_text()

    table = re.search(r'<table id="engagement-table">(.*?)</table>', html, re.S).group(1)
    cells = [re.sub(r"<[^>]+>", " ", row).split() for row in table.split("</tr>")[1:-1]]
    assert cells[1] == ["email", "B", "2", "1", "50.0%", "1", "50.0%", "0", "0.0%", "0", "0.0%",
                        "1", "1", "1", "1"]  # fmt: skip
    assert 'alt="engagement per channel and arm"' in html
    embedded = json.loads(re.search(r'id="ceap-report-data">(.*?)</script>', html, re.S).group(1))
    assert engagement(type("D", (), embedded)) == EXPECTED


def test_the_engagement_chart_needs_something_sent():
    shadow_only = [{"channel": "email", "treatment": "A", **dict.fromkeys(STAGES, 0)}]
    assert charts.engagement(shadow_only, STAGES) is None
    sent = [{**shadow_only[0], "sent": 4, "delivered": 3, "opened": 2, "clicked": 1}]
    assert charts.engagement(sent, STAGES).startswith(b"\x89PNG")
