"""The store roles (stores/ports.py) held on every backend: a backend implements each
method of each role it declares and only those roles, every declared role behaves the same
on SQLite and DynamoDB, and a command refuses at start a store that lacks a role it needs."""

from __future__ import annotations

import inspect
from datetime import datetime

import pyarrow as pa
import pytest

from ceap.context import RunContext
from ceap.errors import StoreError
from stores.base import CANDIDATE_COLUMNS, OUTBOX_COLUMNS, CandidateStore
from stores.dynamodb import DynamoDBStore
from stores.leasing import LeaseRequest
from stores.ports import METHODS, NEEDS, PROTOCOLS, Role, require_roles
from stores.sqlite import SqliteStore

BACKENDS = [SqliteStore, DynamoDBStore]
NOW, LATER = "2026-11-25T10:00:00Z", "2026-11-25T11:00:00Z"


def implements(cls: type, method: str) -> bool:
    return getattr(cls, method) is not getattr(CandidateStore, method)


@pytest.mark.parametrize("backend", BACKENDS, ids=lambda c: c.__name__)
@pytest.mark.parametrize("role", list(Role), ids=lambda r: r.name)
def test_a_backend_declares_exactly_the_roles_it_implements(backend, role):
    done = [m for m in METHODS[role] if implements(backend, m)]
    if role in backend.roles:
        assert done == list(METHODS[role]), f"{backend.__name__} declares {role} but lacks some"
    else:
        assert done != list(METHODS[role]), f"{backend.__name__} implements {role}: declare it"


@pytest.mark.parametrize("backend", BACKENDS, ids=lambda c: c.__name__)
def test_a_backend_takes_each_roles_parameters_as_its_protocol_names_them(backend):
    for role in backend.roles:
        protocol = PROTOCOLS[role]
        for name in METHODS[role]:
            want = list(inspect.signature(getattr(protocol, name)).parameters)
            params = inspect.signature(getattr(backend, name)).parameters
            got = list(params)
            assert got[: len(want)] == want, f"{backend.__name__}.{name}{got} is not {want}"
            extra = [p for p in got[len(want) :] if params[p].default is inspect.Parameter.empty]
            assert not extra, f"{backend.__name__}.{name} needs more than {role.value} gives"


def test_every_base_method_belongs_to_a_role():
    listed = {m for methods in METHODS.values() for m in methods}
    public = {n for n, v in vars(CandidateStore).items() if callable(v) and not n.startswith("_")}
    assert public - {"close"} == listed


def test_a_command_refuses_a_store_that_lacks_a_role_it_needs(each_store):
    for command, roles in NEEDS.items():
        if roles <= each_store.roles:
            require_roles(each_store, command)
        else:
            with pytest.raises(StoreError, match=f"cannot be used for a {command}: it lacks"):
                require_roles(each_store, command, "dynamodb://x")
    require_roles(each_store, "streaming run")  # both keep the streaming ledger


def candidate(**fields) -> dict:
    return {
        "program": "p", "customer_id": "c1", "subject_type": "product", "subject_id": "s1",
        "action": "review", "context": "{}", "score": 0.5, "model_id": "m", "treatment": "m",
        "created_at": NOW, "expires_at": "2026-12-25T10:00:00Z", "deliver_after": NOW,
        "status": "live",
    } | fields  # fmt: skip


def test_candidate_writes_serving_reads_and_analytics_agree(each_store):
    store = each_store
    rows = [candidate(), candidate(subject_id="s2", score=0.9)]
    store.upsert_candidates(pa.table({c: [r[c] for r in rows] for c in CANDIDATE_COLUMNS}))
    served = store.customer_candidates("c1")
    assert [r["subject_id"] for r in served] == ["s2", "s1"]  # best first
    assert sorted(store.table("candidates").column("subject_id").to_pylist()) == ["s1", "s2"]
    assert store.expire_candidate("p", "c1", "s1") is True
    assert store.expire_candidate("p", "c1", "s1") is False  # no longer live


def candidate_table(*rows: dict) -> pa.Table:
    return pa.table({c: [r[c] for r in rows] for c in CANDIDATE_COLUMNS})


def test_writes_in_a_writing_block_are_all_stored(each_store):
    store = each_store
    with store.writing():
        store.upsert_candidates(candidate_table(candidate()))
        with store.writing():  # a nested block joins the enclosing one
            store.upsert_candidates(candidate_table(candidate(subject_id="s2")))
    assert sorted(store.table("candidates").column("subject_id").to_pylist()) == ["s1", "s2"]


def test_a_failing_writing_block_keeps_what_the_backend_promises(each_store):
    """SQLite rolls the whole block back; DynamoDB has no transaction across tables, each
    write stands (a re-run writes what is missing)."""
    store = each_store
    with pytest.raises(RuntimeError), store.writing():
        store.upsert_candidates(candidate_table(candidate()))
        raise RuntimeError("the outbox write failed")
    kept = store.table("candidates").num_rows
    assert kept == (0 if isinstance(store, SqliteStore) else 1)
    store.upsert_candidates(candidate_table(candidate(subject_id="s2")))  # the store still writes
    assert store.table("candidates").num_rows == kept + 1


def test_registries_agree(each_store):
    store = each_store
    store.add_opt_out("c1", "p", None)
    assert store.is_opted_out("c1", "p") and not store.is_opted_out("c2", "p")
    assert store.record_response("p", "c1", "s1", {"stars": 5}) is False  # no candidate
    assert store.has_response("p", "c1", "s1") and not store.has_response("p", "c1", "s2")
    assert store.remove_opt_outs("c1") == 1 and not store.is_opted_out("c1", "p")


def test_the_outbox_queue_agrees(each_store):
    store = each_store
    store.upsert_candidates(pa.table({c: [candidate()[c]] for c in CANDIDATE_COLUMNS}))
    row = {
        "program": "p", "customer_id": "c1", "subject_id": "s1", "channel": "email",
        "send_after": NOW, "status": "pending", "attempts": 0, "idempotency_key": "k1",
        "reason": None, "template": None, "shadow": 0, "created_at": NOW,
    }  # fmt: skip
    cols = [*OUTBOX_COLUMNS, "template", "shadow", "created_at"]
    table = pa.table({
        k: pa.array([row[k]], pa.string() if k in ("reason", "template") else None) for k in cols
    })  # fmt: skip
    assert store.enqueue_outbox(table) == 1 and store.enqueue_outbox(table) == 0  # a re-run
    leased = store.lease_outbox(LeaseRequest("me", NOW, NOW, LATER, 10, ["p"]))
    assert [r["idempotency_key"] for r in leased] == ["k1"]
    assert store.lease_outbox(LeaseRequest("other", NOW, NOW, LATER, 10, ["p"])) == []  # held
    assert store.outbox_leases("m", NOW) == {"me": ["k1"]}
    assert store.mark_outbox("me", [{"key": "k1", "status": "sent"}], NOW) == 1
    status = store.outbox_status("p").to_pylist()
    assert [(r["channel"], r["status"], r["rows"]) for r in status] == [("email", "sent", 1)]


def outcome_rows(*rows: tuple) -> pa.Table:
    """(position, outcome, identity) rows as the graph's outcome tables carry them."""
    n = len(rows)
    return pa.table({
        "position": pa.array([r[0] for r in rows], pa.int64()),
        "outcome": [r[1] for r in rows], "reason": pa.nulls(n, pa.string()),
        "customer_id": ["c1"] * n, "subject_id": ["s1"] * n,
        "identity": pa.array([r[2] for r in rows], pa.string()),
    })  # fmt: skip


def at(monkeypatch, text: str) -> datetime:
    when = datetime.fromisoformat(text)
    monkeypatch.setattr(RunContext, "utcnow", staticmethod(lambda: when))
    return when


def test_the_ledger_keeps_the_first_outcome_of_a_position(each_store, monkeypatch):
    store, big = each_store, 2**62 + 5  # a hashed position (kinesis, pubsub, kafka)
    at(monkeypatch, NOW)
    store.record_outcomes("p", outcome_rows((0, "candidate", "a"), (1, "filtered", "b"),
                                            (1, "candidate", "b"), (big, "candidate", "k")))  # fmt: skip
    store.record_outcomes("p", outcome_rows((0, "dead_letter", "a"), (2, "duplicate", "a")))
    store.record_outcomes("other", outcome_rows((0, "filtered", "a")))
    ledger = {
        (r["program"], r["position"]): (r["outcome"], r["time"])
        for r in store.table("event_outcomes").to_pylist()
    }
    assert ledger == {
        ("p", 0): ("candidate", NOW), ("p", 1): ("filtered", NOW), ("p", 2): ("duplicate", NOW),
        ("p", big): ("candidate", NOW), ("other", 0): ("filtered", NOW),
    }  # fmt: skip


def test_seen_events_are_the_least_position_of_an_identity_within_the_window(
    each_store, monkeypatch
):
    store = each_store
    at(monkeypatch, NOW)
    store.record_outcomes("p", outcome_rows((5, "candidate", "a"), (9, "duplicate", "a"),
                                            (7, "candidate", "b"), (8, "candidate", None)))  # fmt: skip
    at(monkeypatch, LATER)
    store.record_outcomes("p", outcome_rows((3, "candidate", "b"), (11, "duplicate", "a")))
    store.record_outcomes("p", outcome_rows((3, "filtered", "x")))  # a replay: no new identity
    asked = ["a", "b", "x", "unknown", "a"]
    assert store.seen_events("p", asked, datetime.fromisoformat(NOW)) == {"a": 5, "b": 3}
    assert store.seen_events("p", asked, datetime.fromisoformat(LATER)) == {"a": 11, "b": 3}
    assert store.seen_events("other", asked, datetime.fromisoformat(NOW)) == {}
    assert store.seen_events("p", [], datetime.fromisoformat(NOW)) == {}


def test_a_stream_resumes_at_the_first_batch_not_fully_accounted_for(each_store):
    store = each_store
    assert store.resume_position("p") == 0 and store.unaccounted_events("p") == 0
    edge = 2**16  # a batch across a DynamoDB partition block of the outcomes
    store.record_stream_batch("p", 0, 30, 3)  # positions 0, 10, 20 (byte offsets of lines)
    store.record_stream_batch("p", 30, 50, 2)
    store.record_stream_batch("p", edge - 10, edge + 10, 3)
    store.record_stream_batch("p", 0, 99, 9)  # a replay read it in another cut: the first stays
    store.record_outcomes("p", outcome_rows((0, "candidate", "a"), (10, "filtered", "b"),
                                            (20, "candidate", "c"), (30, "candidate", "d")))  # fmt: skip
    assert store.resume_position("p") == 30
    assert store.unaccounted_events("p") == 1 + 3
    store.record_outcomes("p", outcome_rows((40, "candidate", "e"), (edge - 10, "candidate", "f"),
                                            (edge + 5, "candidate", "g")))  # fmt: skip
    assert store.resume_position("p") == edge - 10
    assert store.unaccounted_events("p") == 1
    store.record_outcomes("p", outcome_rows((edge, "filtered", "h")))
    assert store.resume_position("p") == edge + 10 and store.unaccounted_events("p") == 0
    assert store.resume_position("p") == edge + 10  # again, from batches known complete
    assert store.resume_position("other") == 0
    batches = sorted(
        (r["start"], r["end"], r["size"]) for r in store.table("stream_batches").to_pylist()
    )
    assert batches == [(0, 30, 3), (30, 50, 2), (edge - 10, edge + 10, 3)]


@pytest.mark.integration
def test_a_streaming_run_on_a_store_without_the_ledger_stops_before_reading(
    moto_endpoint, monkeypatch
):
    """It used to fail with NotImplementedError once events flowed."""
    from configs.programs import load_by_name
    from pipelines.streaming import build_streaming_pipeline

    monkeypatch.setattr(DynamoDBStore, "roles", frozenset(Role) - {Role.LEDGER})
    spec = f"dynamodb://contract_?region=us-east-1&endpoint_url={moto_endpoint}"
    program = load_by_name("video_ratings", "configs")
    ctx = RunContext(program="video_ratings", now=None, store=spec, streaming=True)
    with pytest.raises(
        StoreError, match="cannot be used for a streaming run: it lacks the streaming"
    ):
        build_streaming_pipeline(program, ctx)


@pytest.mark.integration
def test_a_streaming_run_starts_on_dynamodb(moto_endpoint):
    from configs.programs import load_by_name
    from pipelines.streaming import build_streaming_pipeline

    spec = f"dynamodb://contract_?region=us-east-1&endpoint_url={moto_endpoint}"
    program = load_by_name("video_ratings", "configs")
    ctx = RunContext(program="video_ratings", now=None, store=spec, streaming=True)
    assert build_streaming_pipeline(program, ctx) is not None  # resumes at 0: nothing read yet
