"""Journeys (DESIGN §9) held on every backend of the outbox queue role (stores/ports.py): one
row per candidate and step, ``waiting`` rows out of every lease until ``settle_waiting`` moves
them on, and the facts a lease attaches for ``when:`` conditions (``responded``, ``engaged``),
alike on SQLite and DynamoDB (moto)."""

from __future__ import annotations

import pyarrow as pa

from stores.base import CANDIDATE_COLUMNS, OUTBOX_COLUMNS, CandidateStore
from stores.leasing import LeaseRequest
from tests.stores.test_contract import LATER, NOW, candidate

EARLIER = "2026-11-25T09:00:00Z"


def steps(*rows: dict, with_step: bool = True) -> pa.Table:
    """Outbox rows of program ``p`` as the graph enqueues them; ``with_step=False``: as
    before journeys (no ``step`` column: each row is its channel's step)."""
    defaults = {
        "program": "p", "customer_id": "c1", "subject_id": "s1", "channel": "email",
        "send_after": NOW, "status": "pending", "attempts": 0, "idempotency_key": None,
        "reason": None, "template": None, "shadow": 0, "created_at": EARLIER, "step": None,
    }  # fmt: skip
    full = [defaults | r for r in rows]
    for r in full:
        r["step"] = r["step"] or r["channel"]
        r["idempotency_key"] = r["idempotency_key"] or "|".join(
            (r["customer_id"], r["subject_id"], r["step"])
        )
    columns = [*OUTBOX_COLUMNS, "template", "shadow", "created_at"] + ["step"] * with_step
    types = {"attempts": pa.int64(), "shadow": pa.int64()}
    return pa.table({c: pa.array([r[c] for r in full], types.get(c, pa.string())) for c in columns})


def add_candidates(store: CandidateStore, *subjects: str) -> None:
    rows = [candidate(subject_id=s) for s in subjects]
    store.upsert_candidates(pa.table({c: [r[c] for r in rows] for c in CANDIDATE_COLUMNS}))


def lease(store: CandidateStore, owner: str = "me", **kw) -> list[dict]:
    return store.lease_outbox(LeaseRequest(owner, NOW, NOW, LATER, 100, ["p"], **kw))


def outbox(store: CandidateStore) -> dict[tuple[str, str, str], dict]:
    return {
        (r["customer_id"], r["subject_id"], r["step"]): r for r in store.table("outbox").to_pylist()
    }


def send(store: CandidateStore, *keys: str) -> None:
    """Leases every due row and marks those of ``keys`` sent (the others go back)."""
    held = [r["idempotency_key"] for r in lease(store, "sender")]
    assert set(keys) <= set(held)
    store.mark_outbox("sender", [{"key": k, "status": "sent", "sent_at": NOW} for k in keys], NOW)
    store.release_outbox("sender", [k for k in held if k not in keys])


def test_a_step_is_a_row_of_its_own_and_a_row_without_one_is_its_channels(each_store):
    store = each_store
    journey = steps(
        {"step": "invite"}, {"step": "nudge", "status": "waiting"}, {"channel": "in_app"}
    )
    assert store.enqueue_outbox(journey) == 3
    assert store.enqueue_outbox(journey) == 0  # a re-run never duplicates a step's row
    assert store.enqueue_outbox(steps({"channel": "push"}, with_step=False)) == 1
    rows = outbox(store)
    assert {k: (r["channel"], r["status"]) for k, r in rows.items()} == {
        ("c1", "s1", "invite"): ("email", "pending"),
        ("c1", "s1", "nudge"): ("email", "waiting"),
        ("c1", "s1", "in_app"): ("in_app", "pending"),
        ("c1", "s1", "push"): ("push", "pending"),
    }
    assert sorted((r["channel"], r["step"]) for r in lease(store)) == [
        ("email", "invite"), ("in_app", "in_app"), ("push", "push")
    ]  # fmt: skip
    status = {(r["channel"], r["status"]): r["rows"] for r in store.outbox_status("p").to_pylist()}
    assert status == {("email", "pending"): 1, ("email", "waiting"): 1, ("in_app", "pending"): 1,
                      ("push", "pending"): 1}  # fmt: skip


def test_a_waiting_row_is_leased_only_once_settle_waiting_makes_it_pending(each_store):
    store = each_store
    add_candidates(store, "s1", "s2")
    store.enqueue_outbox(steps(
        {"step": "invite"},
        {"step": "nudge", "status": "waiting", "send_after": EARLIER},
        {"subject_id": "s2", "step": "nudge", "status": "waiting"},
        {"subject_id": "s2", "step": "survey", "status": "waiting", "send_after": EARLIER},
    ))  # fmt: skip
    assert [r["step"] for r in lease(store)] == ["invite"]  # waiting rows are never due
    nudge = {"program": "p", "customer_id": "c1", "subject_id": "s1", "step": "nudge"}
    settlements = [
        nudge | {"status": "pending", "send_after": NOW},
        nudge | {"subject_id": "s2", "status": "suppressed", "reason": "parent step invite failed"},
        nudge | {"subject_id": "s2", "step": "survey", "status": "pending"},  # keeps send_after
        nudge | {"subject_id": "nope", "status": "pending", "send_after": NOW},  # no such row
    ]
    assert store.settle_waiting(settlements) == 3
    assert store.settle_waiting(settlements) == 0  # no longer waiting: a replay changes nothing
    assert store.settle_waiting([]) == 0
    rows = outbox(store)
    assert (rows["c1", "s1", "nudge"]["status"], rows["c1", "s1", "nudge"]["send_after"]) == (
        "pending", NOW)  # fmt: skip
    assert (rows["c1", "s2", "nudge"]["status"], rows["c1", "s2", "nudge"]["reason"]) == (
        "suppressed", "parent step invite failed")  # fmt: skip
    assert rows["c1", "s2", "survey"]["send_after"] == EARLIER
    leased = sorted((r["subject_id"], r["step"], r["send_after"]) for r in lease(store, "other"))
    assert leased == [("s1", "nudge", NOW), ("s2", "survey", EARLIER)]


def test_a_lease_with_conditions_reads_responses_and_the_candidates_opens_and_clicks(each_store):
    store = each_store
    add_candidates(store, "s1", "s2", "s1#x")
    store.enqueue_outbox(steps(
        {"step": "invite"}, {"step": "banner", "channel": "in_app"},
        {"step": "reminder", "channel": "push", "send_after": LATER},
        {"subject_id": "s2", "step": "reminder", "channel": "push", "send_after": LATER},
        {"subject_id": "s1#x", "step": "invite"},  # a subject id that extends s1's key
    ))  # fmt: skip
    send(store, "c1|s1|invite", "c1|s1|banner", "c1|s1#x|invite")
    event = {"program": "p", "customer_id": "c1", "subject_id": "s1", "channel": "email",
             "step": "invite", "idempotency_key": "c1|s1|invite", "at": NOW}  # fmt: skip
    store.record_engagement([
        event | {"event": "delivered"}, event | {"event": "opened"},
        event | {"event": "clicked", "event_id": "https://a"},
        event | {"subject_id": "s1#x", "idempotency_key": "c1|s1#x|invite", "event": "clicked"},
    ])  # fmt: skip
    store.record_response("p", "c1", "s1#x", {"registered": True})
    later = LeaseRequest("me", LATER, NOW, LATER, 100, ["p"], conditions=True)
    facts = {
        r["subject_id"]: (r["responded"], sorted(r["engaged"])) for r in store.lease_outbox(later)
    }
    assert facts == {
        "s1": (False, [("invite", "clicked"), ("invite", "opened")]),
        "s2": (False, []),
    }
    store.release_outbox("me", ["c1|s1|reminder", "c1|s2|reminder"])
    store.record_response("p", "c1", "s1", {"registered": True})
    again = store.lease_outbox(later._replace(owner="again"))
    assert {r["subject_id"]: r["responded"] for r in again} == {"s1": True, "s2": False}
    store.release_outbox("again", ["c1|s1|reminder", "c1|s2|reminder"])
    plain = store.lease_outbox(later._replace(owner="plain", conditions=False))
    assert plain and not any("responded" in r or "engaged" in r for r in plain)


def test_a_messages_row_names_its_step(each_store):
    """Engagement events take their step from the row find_message returns
    (serving/feedback.py), so ``opened:invite`` can only be met if it names the step."""
    store = each_store
    add_candidates(store, "s1")
    store.enqueue_outbox(steps({"step": "invite"}))
    send(store, "c1|s1|invite")
    assert store.find_message(key="c1|s1|invite")["step"] == "invite"


def test_waiting_rows_whose_parent_ended_are_found(each_store):
    """A dispatcher killed between recording a parent and releasing its children (or a step
    added after its parent was sent) leaves children waiting: ``ended_parents`` finds them."""
    store = each_store
    add_candidates(store, "s1", "s2", "s3")
    store.enqueue_outbox(steps(
        *({"subject_id": s, "step": "invite"} for s in ("s1", "s2", "s3")),
        *({"subject_id": s, "step": "nudge", "status": "waiting"} for s in ("s1", "s2", "s3")),
    ))  # fmt: skip
    send(store, "c1|s1|invite", "c1|s2|invite")  # s3's invite is still pending
    store.settle_waiting([{"program": "p", "customer_id": "c1", "subject_id": "s2",
                           "step": "nudge", "status": "pending", "send_after": LATER}])  # fmt: skip
    found = store.ended_parents("p", "invite", "nudge")
    assert found == [{"customer_id": "c1", "subject_id": "s1", "status": "sent", "at": NOW}]
    assert store.ended_parents("p", "invite", "other") == []
