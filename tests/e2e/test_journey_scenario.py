"""The seed's Scenario 3 as a journey (issue 18; DESIGN §9), with a controllable clock: an
email invitation at 10:00, an in-app banner, a push reminder the day before the event only
to those who registered, a survey email after it only to them; each event capped at its
capacity. Real mail to a local SMTP server, push to a loopback HTTP provider, the
registration through ``POST /v1/responses``; a re-run and a second dispatch change nothing.
On the embedded SQLite default, and on DynamoDB (moto's server on loopback): the batch
through ``run.py --store``, dispatch and the Serving API on the same store spec."""

from __future__ import annotations

import os
import subprocess
import sys
from datetime import datetime
from pathlib import Path
from uuid import uuid4

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from fastapi.testclient import TestClient

from channels.dispatcher import dispatch
from serving.app import create_app
from stores.spec import open_store
from tests.channels.conftest import SmtpSink, start_smtp
from tests.channels.test_adapters import http_api  # noqa: F401 - a fixture

ROOT = Path(__file__).resolve().parents[2]
T = lambda text: datetime.fromisoformat(text.replace("Z", "+00:00"))  # noqa: E731
RECIPIENTS = "{{recipients: {{type: parquet, options: {{path: {customers}}}, key: customer_id}}}}"
PROGRAM = """
program: meetup
action: register
subject_type: event
source: [{{type: parquet, options: {{path: {matches}}}}}]
fields: {{customer_id: customer_id, subject_id: event_id, context: [title, starts_at, ends_at]}}
enrich:
  - {{type: parquet, key: subject_id, on: event_id, options: {{path: {events}}},
     columns: [title, starts_at, ends_at, capacity]}}
scoring: {{models: [{{id: m, type: column, options: {{column: interest_match}}}}]}}
ranking: {{per: subject, top_n: 100, top_n_column: capacity}}
store: {{ttl: 60d}}
channels:
  - {{type: email, name: invite, template: event_invite, send_at: "10:00", options: {recipients}}}
  - {{type: in_app, name: banner}}
  - type: push
    name: reminder
    at: {{column: starts_at, offset: -1d}}
    when: responded
    options: {{provider: http, url: "{push_url}", recipients: {{type: parquet, options: {{path: {customers}}}, key: customer_id}}}}
  - {{type: email, name: survey, template: survey, at: {{column: ends_at, offset: 1h}}, when: responded, options: {recipients}}}
"""


def world(root: Path, push_url: str) -> Path:
    ids = [f"c{i}" for i in range(1, 8)]
    pq.write_table(pa.table({
        "customer_id": ids, "email": [f"{c}@example.com" for c in ids],
        "push_token": [f"tok-{c}" for c in ids], "timezone": ["UTC"] * len(ids),
    }), root / "customers.parquet")  # fmt: skip
    pq.write_table(pa.table({
        "event_id": ["E1", "E2", "E3"], "title": ["Jazz night", "Book club", "Yesterday's talk"],
        "starts_at": [T("2026-05-10T18:00:00Z"), T("2026-05-03T18:00:00Z"), T("2026-04-30T18:00:00Z")],
        "ends_at": [T("2026-05-10T21:00:00Z"), T("2026-05-03T20:00:00Z"), T("2026-04-30T20:00:00Z")],
        "capacity": [2, 5, 10],
    }), root / "events.parquet")  # fmt: skip
    matches = [("c1", "E1", 0.9), ("c2", "E1", 0.8), ("c3", "E1", 0.7), ("c4", "E1", 0.6),
               ("c1", "E2", 0.9), ("c5", "E2", 0.7), ("c6", "E2", 0.65), ("c7", "E3", 0.9)]  # fmt: skip
    pq.write_table(pa.table({
        "customer_id": [m[0] for m in matches], "event_id": [m[1] for m in matches],
        "interest_match": [m[2] for m in matches],
    }), root / "matches.parquet")  # fmt: skip
    configs = root / "configs"
    configs.mkdir()
    recipients = RECIPIENTS.format(customers=root / "customers.parquet")
    (configs / "meetup.yaml").write_text(PROGRAM.format(
        matches=root / "matches.parquet", events=root / "events.parquet", recipients=recipients,
        customers=root / "customers.parquet", push_url=push_url + "/v1/projects/p/messages:send",
    ))  # fmt: skip
    return configs


def batch(root: Path, configs: Path, store: str | None = None) -> subprocess.CompletedProcess:
    """``run.py`` on the default store of ``root/home``, or on ``store`` (the environment,
    moto's fake AWS credentials included, is passed on)."""
    env = {**os.environ, "CEAP_HOME": str(root / "home"), "PYTHONPATH": str(ROOT)}
    done = subprocess.run(
        [sys.executable, str(ROOT / "run.py"), "--program", "meetup", "--config-dir", str(configs),
         "--now", "2026-05-01T08:00:00Z", *(["--store", store] if store else [])],
        env=env, capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    return done


def outbox(spec: str) -> dict[tuple[str, str, str], tuple]:
    """(customer, subject, step) -> (status, reason, send_after), on any store."""
    store = open_store(spec)
    try:
        rows = store.table("outbox").to_pylist()
    finally:
        store.close()
    return {
        (r["customer_id"], r["subject_id"], r["step"]): (r["status"], r["reason"], r["send_after"])
        for r in rows
    }


@pytest.fixture(params=["sqlite", pytest.param("dynamodb", marks=pytest.mark.integration)])
def store_spec(request: pytest.FixtureRequest, tmp_path) -> tuple[str, str | None]:
    """(the store's spec, what ``run.py --store`` is given: None for the embedded default)."""
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'home' / 'ceap.db'}", None
    endpoint = request.getfixturevalue("moto_endpoint")
    spec = f"dynamodb://j{uuid4().hex[:10]}_?region=us-east-1&endpoint_url={endpoint}"
    return spec, spec


@pytest.mark.slow
def test_scenario_3_runs_as_a_journey(tmp_path, http_api, monkeypatch, store_spec):  # noqa: F811
    push_url, pushes = http_api
    configs = world(tmp_path, push_url)
    spec, store = store_spec
    batch(tmp_path, configs, store)
    rows = outbox(spec)
    # E1 holds 2 (c1, c2 by interest): c3, c4 ranked out; E2 takes its 3; E3 has begun.
    assert {(c, s) for c, s, _ in rows} == {("c1", "E1"), ("c2", "E1"), ("c1", "E2"),
                                          ("c5", "E2"), ("c6", "E2"), ("c7", "E3")}  # fmt: skip
    assert rows[("c7", "E3", "reminder")][:2] == ("suppressed", "too late")
    assert rows[("c7", "E3", "survey")][:2] == ("suppressed", "too late")
    assert rows[("c1", "E1", "reminder")] == ("pending", None, "2026-05-09T18:00:00Z")
    assert rows[("c1", "E1", "survey")] == ("pending", None, "2026-05-10T22:00:00Z")
    assert rows[("c1", "E1", "invite")] == ("pending", None, "2026-05-01T10:00:00Z")

    sink = SmtpSink()
    controller, port = start_smtp(sink)
    monkeypatch.setenv("CEAP_SMTP_HOST", "127.0.0.1")
    monkeypatch.setenv("CEAP_SMTP_PORT", str(port))
    try:
        early = dispatch(spec, configs, now=T("2026-05-01T09:00:00Z"))  # before 10:00: banners
        assert early.total("sent") == 6 and sink.messages == []
        invites = dispatch(spec, configs, now=T("2026-05-01T10:00:00Z"))
        assert sorted(str(m["To"]) for m in sink.messages) == sorted(
            f"{c}@example.com" for c in ("c1", "c2", "c1", "c5", "c6", "c7"))  # fmt: skip
        assert invites.counts[("email", "sent")] == 6
        # c1 registers for E1 (only): through the Serving API, as the event site would.
        client = TestClient(create_app(spec, config_dir=configs, api_keys=["k"]))
        answer = client.post("/v1/responses", headers={"X-API-Key": "k"},
                             json={"program": "meetup", "customer_id": "c1", "subject_id": "E1"})  # fmt: skip
        assert answer.status_code == 200 and answer.json()["consumed"]
        reminders = dispatch(spec, configs, now=T("2026-05-09T18:30:00Z"))
        assert [p["body"]["message"]["token"] for p in pushes] == ["tok-c1"]
        assert reminders.counts[("push", "sent")] == 1
        after = outbox(spec)
        assert after[("c2", "E1", "reminder")][:2] == ("suppressed", "condition not met: responded")
        assert after[("c5", "E2", "reminder")][:2] == ("suppressed", "condition not met: responded")
        mails = len(sink.messages)
        surveys = dispatch(spec, configs, now=T("2026-05-11T09:00:00Z"))  # 22:00 was quiet hours
        assert [str(m["To"]) for m in sink.messages[mails:]] == ["c1@example.com"]
        assert surveys.counts[("email", "sent")] == 1
        settled = outbox(spec)
        assert settled[("c1", "E1", "survey")][0] == "sent"
        assert settled[("c2", "E1", "survey")][:2] == ("suppressed", "condition not met: responded")
        # A re-run of the batch and a second dispatch change nothing.
        batch(tmp_path, configs, store)
        again = dispatch(spec, configs, now=T("2026-05-11T09:00:00Z"))
        assert outbox(spec) == settled and again.total("sent") == 0
        assert len(pushes) == 1 and len(sink.messages) == mails + 1
    finally:
        controller.stop()


def test_the_report_shows_the_journey_per_step(tmp_path, http_api):  # noqa: F811
    """After the batch alone: every step with its rows, in the plan's order."""
    from reports.html import build_report, render

    push_url, _ = http_api
    configs = world(tmp_path, push_url)
    batch(tmp_path, configs)
    data = build_report("meetup", store=f"sqlite:///{tmp_path / 'home' / 'ceap.db'}",
                        config_dir=str(configs))  # fmt: skip
    steps = {s["step"]: s for s in data.steps}
    assert list(steps) == ["invite", "banner", "reminder", "survey"]
    assert (
        steps["invite"]["pending"] == 6
        and steps["invite"]["timing"] == "+0s after the event, 10:00 local"
    )
    assert steps["reminder"]["suppressed"] == 1 and steps["reminder"]["reasons"] == {"too late": 1}
    assert steps["reminder"]["when"] == "responded" and steps["reminder"]["pending"] == 5
    html = render(data)
    assert 'id="journey-picture"' in html and "at starts_at -1d" in html
