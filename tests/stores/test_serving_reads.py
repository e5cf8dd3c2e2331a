"""The store methods the Serving API reads and writes through, held to the same behaviour on
SQLite and on DynamoDB (moto's server on loopback)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from stores.base import CandidateStore, iso
from stores.sqlite import SqliteStore
from tests.stores.test_dynamodb import candidates

T0 = datetime(2026, 11, 25, 10, 0, tzinfo=UTC)
DAY = timedelta(days=1)


@pytest.fixture
def store(each_store: CandidateStore) -> CandidateStore:
    return each_store


def add(store: CandidateStore, *rows: dict) -> None:
    """Candidates with a non-empty context, so reads are seen to parse it."""
    store.upsert_candidates(candidates(*({"context": '{"k": 1}'} | r for r in rows)))


def test_customer_candidates_best_first_live_only(store):
    add(store, {"subject_id": "a", "score": 0.1}, {"subject_id": "b", "score": 0.9},
        {"subject_id": "c", "score": 0.5, "program": "video_ratings"},
        {"subject_id": "x", "customer_id": "c2"})  # fmt: skip
    store.record_response("reviews", "c1", "a", None)  # consumed: no longer served
    rows = store.customer_candidates("c1")
    assert [r["subject_id"] for r in rows] == ["b", "c"]
    first = rows[0]
    assert first["customer_id"] == "c1" and first["program"] == "reviews"
    assert first["score"] == 0.9 and first["context"] == '{"k": 1}'
    assert {"created_at", "expires_at", "deliver_after", "status", "action", "subject_type",
            "model_id", "treatment"} <= set(first)  # fmt: skip
    assert [r["subject_id"] for r in store.customer_candidates("c1", program="video_ratings")] == ["c"]  # fmt: skip
    assert [r["subject_id"] for r in store.customer_candidates("c1", limit=1)] == ["b"]
    assert store.customer_candidates("nobody") == []


def test_expire_candidate_only_when_live(store):
    add(store, {"subject_id": "a"}, {"subject_id": "b"})
    assert store.expire_candidate("reviews", "c1", "a") is True
    assert store.expire_candidate("reviews", "c1", "a") is False  # already expired
    assert store.expire_candidate("reviews", "c1", "nope") is False
    store.record_response("reviews", "c1", "b", {"stars": 4})
    assert store.expire_candidate("reviews", "c1", "b") is False  # consumed stays consumed
    statuses = {r["subject_id"]: r["status"] for r in store.table("candidates").to_pylist()}
    assert statuses == {"a": "expired", "b": "consumed"}
    assert store.customer_candidates("c1") == []
    add(store, {"subject_id": "a", "created_at": iso(T0 + DAY)})  # the pipeline renews it
    assert [r["subject_id"] for r in store.customer_candidates("c1")] == ["a"]


def test_has_response(store):
    assert store.has_response("reviews", "c1", "s1") is False
    store.record_response("reviews", "c1", "s1", {"stars": 5})
    assert store.has_response("reviews", "c1", "s1") is True
    assert store.has_response("reviews", "c1", "s1#2") is False
    store.record_response("reviews", "c1", "s1#2", None)  # '#' inside a subject id
    assert store.has_response("reviews", "c1", "s1#2") is True
    assert store.has_response("reviews", "c2", "s1") is False
    assert store.has_response("video_ratings", "c1", "s1") is False


def test_is_opted_out(store):
    assert store.is_opted_out("c1", "reviews") is False
    store.add_opt_out("c1", "reviews", None)
    assert store.is_opted_out("c1", "reviews") is True
    assert store.is_opted_out("c1", "reviews", "email") is True
    assert store.is_opted_out("c1", "video_ratings") is False
    store.add_opt_out("c1", None, "sms")  # every program, one channel
    assert store.is_opted_out("c1", "video_ratings") is False
    assert store.is_opted_out("c1", "video_ratings", "sms") is True
    assert store.is_opted_out("c1", "video_ratings", "email") is False
    store.add_opt_out("c2", None, None)  # everything
    assert store.is_opted_out("c2", "anything", "push") is True
    store.remove_opt_outs("c1")
    assert store.is_opted_out("c1", "reviews") is False


def test_every_response_is_kept_and_a_key_makes_a_retry_a_no_op(store, monkeypatch):
    """Three responses in the same second were one row (``INSERT OR REPLACE`` keyed to the
    second): each is kept now; the same idempotency key twice is one row."""
    from ceap.context import RunContext

    monkeypatch.setattr(RunContext, "utcnow", staticmethod(lambda: T0))
    add(store, {"subject_id": "s1"})
    for stars in (3, 4, 5):
        assert store.record_response("reviews", "c1", "s1", {"stars": stars}) is True
    assert store.record_response("reviews", "c1", "s1", {"stars": 1}, key="retry-1") is True
    assert store.record_response("reviews", "c1", "s1", {"stars": 2}, key="retry-1") is True
    rows = store.table("responses").to_pylist()
    assert sorted(r["response"] for r in rows) == [
        '{"stars": 1}', '{"stars": 3}', '{"stars": 4}', '{"stars": 5}'
    ]  # fmt: skip
    assert len({r["response_id"] for r in rows}) == 4


def test_a_store_made_before_response_ids_keeps_its_responses(tmp_path):
    import sqlite3

    path = tmp_path / "old.db"
    with sqlite3.connect(path) as con:
        con.execute(
            "CREATE TABLE responses (program TEXT NOT NULL, customer_id TEXT NOT NULL, "
            "subject_id TEXT NOT NULL, response TEXT, created_at TEXT NOT NULL, "
            "PRIMARY KEY (program, customer_id, subject_id, created_at))"
        )
        con.execute("INSERT INTO responses VALUES ('reviews', 'c1', 's1', '5', ?)", (iso(T0),))
    store = SqliteStore(path)
    assert store.record_response("reviews", "c1", "s1", 4) is False  # no candidate
    rows = store.table("responses").to_pylist()
    store.close()
    assert sorted((r["response"], r["response_id"][:3]) for r in rows) == [
        ("4", "at:"), ("5", "202")
    ]  # fmt: skip
