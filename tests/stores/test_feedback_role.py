"""The delivery feedback role (DESIGN §8) on every backend that declares it: finding a
message by key or provider id, engagement events kept once, the address suppression list."""

from __future__ import annotations

import pyarrow as pa
import pytest

from stores.base import OUTBOX_COLUMNS, address_key
from stores.leasing import LeaseRequest
from stores.ports import Role


@pytest.fixture
def store(each_store):
    if Role.FEEDBACK not in each_store.roles:
        pytest.skip(f"{type(each_store).__name__} does not keep delivery feedback yet")
    return each_store


def sent_row(store, key: str = "k1", customer: str = "c1", marks: list[dict] | None = None) -> None:
    """An outbox row enqueued, leased and marked: sent to ``{customer}@x.org`` as
    ``<{key}@ceap>``, or as ``marks`` (updates without their key) say."""
    row = {
        "program": "reviews", "customer_id": customer, "subject_id": "s1", "channel": "email",
        "send_after": "2026-01-01T00:00:00Z", "status": "pending", "attempts": 0,
        "idempotency_key": key, "reason": None, "template": None, "shadow": 0,
        "created_at": "2026-01-01T00:00:00Z",
    }  # fmt: skip
    cols = [*OUTBOX_COLUMNS, "template", "shadow", "created_at"]
    store.enqueue_outbox(pa.table({
        c: pa.array([row[c]], pa.string() if c in ("reason", "template") else None) for c in cols
    }))  # fmt: skip
    (leased,) = store.lease_outbox(LeaseRequest(
        "me", "2026-01-02T00:00:00Z", "2026-01-02T00:00:00Z", "2026-01-02T00:10:00Z", 10,
        ["reviews"],
    ))  # fmt: skip
    marks = marks or [{"status": "sent", "sent_at": "2026-01-02T00:00:00Z",
                       "address": f"{customer}@x.org", "message_id": f"<{key}@ceap>"}]  # fmt: skip
    for mark in marks:
        assert store.mark_outbox("me", [mark | {"key": key}], "2026-01-02T00:00:00Z") == 1


def test_a_message_is_found_by_its_key_or_provider_id(store):
    sent_row(store)
    by_key = store.find_message(key="k1")
    assert by_key["customer_id"] == "c1" and by_key["address"] == "c1@x.org"
    assert store.find_message(message_id="<k1@ceap>") == by_key
    assert by_key["status"] == "sent" and by_key["message_id"] == "<k1@ceap>"
    assert store.find_message(key="nope") is None and store.find_message() is None


def test_engagement_events_are_kept_once_per_event_id(store):
    sent_row(store)
    event = {"program": "reviews", "customer_id": "c1", "subject_id": "s1", "channel": "email",
             "step": "email", "idempotency_key": "k1", "event": "clicked",
             "at": "2026-01-02T01:00:00Z", "detail": '{"url": "https://a"}', "event_id": "https://a"}  # fmt: skip
    other = event | {"event_id": "https://b", "detail": '{"url": "https://b"}'}
    assert store.record_engagement([event, other, event]) == [True, True, False]
    assert store.record_engagement([event]) == [False]
    kept = store.table("engagement_events").to_pylist()
    assert sorted(e["event_id"] for e in kept) == ["https://a", "https://b"]


def test_the_suppression_list_keeps_the_first_reason_per_normalised_address(store):
    added = store.suppress_addresses([
        ("Bob@Example.COM", "bounced address", "2026-01-02T00:00:00Z"),
        ("bob@example.com", "complained", "2026-01-03T00:00:00Z"),
        ("+1 (555) 000-1234", "complained", "2026-01-03T00:00:00Z"),
    ])  # fmt: skip
    assert added == 2
    found = store.suppressed_addresses(["BOB@example.com", "+15550001234", "amy@example.com"])
    assert found == {"BOB@example.com": "bounced address", "+15550001234": "complained"}
    assert address_key(" +1 555 000 1234 ") == "+15550001234"


def test_a_row_keeps_its_address_and_message_id_unless_a_later_mark_gives_them(store):
    committed = {"status": "sent", "keep_lease": True, "address": "c1@x.org"}  # before sending
    settled = {"status": "sent", "from_status": "sent", "attempted": False, "keep_lease": True,
               "message_id": "<k1@ceap>"}  # the provider's reply  # fmt: skip
    again = {"status": "sent", "from_status": "sent", "attempted": False, "message_id": "<k1b@p>"}
    sent_row(store, marks=[committed, settled])
    row = store.find_message(key="k1")
    assert (row["address"], row["message_id"], row["status"]) == ("c1@x.org", "<k1@ceap>", "sent")
    assert row["program"] == "reviews" and row["shadow"] == 0 and row["channel"] == "email"
    assert store.mark_outbox("me", [again | {"key": "k1"}], "2026-01-02T00:01:00Z") == 1
    assert store.find_message(message_id="<k1b@p>") == row | {"message_id": "<k1b@p>"}


def test_the_key_wins_over_the_message_id_and_empty_names_match_nothing(store):
    sent_row(store)
    sent_row(store, key="k2", customer="c2")
    assert store.find_message(message_id="") is None and store.find_message(key="") is None
    assert store.find_message(message_id="<nope@ceap>") is None
    assert store.find_message(key="k2", message_id="<k1@ceap>")["customer_id"] == "c2"


def test_suppressed_addresses_reads_many_at_once(store):
    addresses = [f"u{i}@example.com" for i in range(150)]
    at = "2026-01-02T00:00:00Z"
    assert store.suppress_addresses([(a, "complained", at) for a in addresses]) == 150
    assert store.suppress_addresses([(" ", "complained", at), ("", "complained", at)]) == 0
    found = store.suppressed_addresses([*addresses, *(f"v{i}@example.com" for i in range(100))])
    assert found == dict.fromkeys(addresses, "complained")
    assert store.suppressed_addresses([]) == {}


def test_every_spelling_of_a_suppressed_address_is_reported(store):
    store.suppress_addresses([("bob@example.com", "complained", "2026-01-02T00:00:00Z")])
    found = store.suppressed_addresses(["Bob@Example.com", "bob@example.com"])
    assert found == {"Bob@Example.com": "complained", "bob@example.com": "complained"}
