"""The streaming ledger on DynamoDB (moto's server on loopback): what the shared contract
(tests/stores/test_contract.py) cannot show: racing writers, a crash between an event's
identity and its outcome, and a restart that does not count again what it found complete."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from datetime import datetime
from uuid import uuid4

import pytest

from stores.dynamodb import DynamoDBStore
from stores.sqlite import SqliteStore
from tests.stores.test_contract import at, outcome_rows

pytestmark = pytest.mark.integration

NOW, LATER = "2026-11-25T10:00:00Z", "2026-11-25T11:00:00Z"


@pytest.fixture
def ddb(moto_endpoint: str) -> Iterator[DynamoDBStore]:
    store = DynamoDBStore.from_spec(
        f"dynamodb://l{uuid4().hex[:10]}_?region=us-east-1&endpoint_url={moto_endpoint}"
    )
    yield store
    store.close()


def test_ledger_tables_carry_sqlite_column_names(tmp_path, ddb: DynamoDBStore) -> None:
    sqlite = SqliteStore(tmp_path / "c.db")
    for name in ("event_outcomes", "stream_batches"):
        assert ddb.table(name).column_names == sqlite.table(name).column_names, name
    sqlite.close()
    schema = ddb.client.describe_table(TableName=ddb.name("event_outcomes"))["Table"]
    assert {a["AttributeName"]: a["AttributeType"] for a in schema["AttributeDefinitions"]} == {
        "pk": "S", "position": "N"}  # fmt: skip


def test_racing_writers_of_a_position_record_one_outcome(ddb: DynamoDBStore) -> None:
    """Four workers replay the same 40 events at once (a retried bundle beside the first
    attempt): each position is recorded once, by exactly one of them."""
    positions = range(40)
    won: dict[str, int] = {}
    start = threading.Barrier(4)

    def writer(name: str) -> None:
        start.wait()
        won[name] = ddb.record_outcomes("p", outcome_rows(*[(p, name, f"e{p}") for p in positions]))

    threads = [threading.Thread(target=writer, args=(f"w{i}",)) for i in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sum(won.values()) == len(positions)  # every position won once, by someone
    rows = ddb.table("event_outcomes").to_pylist()
    assert sorted(r["position"] for r in rows) == list(positions)
    kept = {r["position"]: r["outcome"] for r in rows}
    assert {o: list(kept.values()).count(o) for o in won} == won  # each writer's wins stored
    identities = ddb.client.scan(TableName=ddb.name("event_identities"))["Items"]
    assert len(identities) == len(positions)


def test_a_crash_between_identities_and_outcomes_loses_no_identity(
    ddb: DynamoDBStore, monkeypatch
) -> None:
    """Identities are written first: a crash before the outcomes leaves the events to their
    replay, counted as seen by nobody meanwhile (as in SQLite, where nothing was written).
    The other order would lose the identity of an accounted event for good, and a later
    repeat of it would pass as a fresh event."""
    first = at(monkeypatch, NOW)
    ddb.record_stream_batch("p", 0, 10, 1)
    writes: list[str] = []

    def first_write_only(call):  # the worker is lost after the ledger's first write
        def write(**request) -> dict:
            if writes:
                raise RuntimeError("worker lost between the two writes")
            writes.append(request.get("TableName") or next(iter(request["RequestItems"])))
            return call(**request)

        return write

    with monkeypatch.context() as m:
        for name in ("put_item", "batch_write_item"):
            m.setattr(ddb.client, name, first_write_only(getattr(ddb.client, name)))
        with pytest.raises(RuntimeError, match="worker lost"):
            ddb.record_outcomes("p", outcome_rows((7, "candidate", "a")))
    assert writes == [ddb.name("event_identities")]
    # a repeat at a smaller position (hashed positions: pubsub, kafka) is not a duplicate
    # of an event without an outcome; the event itself is replayed
    assert ddb.seen_events("p", ["a"], first) == {}
    assert ddb.resume_position("p") == 0

    at(monkeypatch, LATER)
    assert ddb.record_outcomes("p", outcome_rows((7, "filtered", "a"))) == 1  # the replay
    assert ddb.record_outcomes("p", outcome_rows((7, "candidate", "a"))) == 0  # and again
    assert ddb.seen_events("p", ["a"], datetime.fromisoformat(LATER)) == {"a": 7}
    assert ddb.resume_position("p") == 10
    [row] = ddb.table("event_outcomes").to_pylist()
    assert (row["outcome"], row["time"]) == ("filtered", LATER)


def test_an_identity_counts_only_where_its_outcome_has_it(ddb: DynamoDBStore, monkeypatch):
    """A position read again under another identity (``fields.event_id`` changed between two
    runs) keeps its first outcome, and that outcome's identity, as SQLite keeps its row."""
    since = at(monkeypatch, NOW)
    ddb.record_outcomes("p", outcome_rows((3, "candidate", "old")))
    ddb.record_outcomes("p", outcome_rows((3, "candidate", "new"), (4, "candidate", "new")))
    assert ddb.seen_events("p", ["old", "new"], since) == {"old": 3, "new": 4}


def test_a_restart_counts_only_batches_not_known_complete(ddb: DynamoDBStore, monkeypatch) -> None:
    for start in range(0, 50, 10):  # five batches of two events: positions start, start + 5
        ddb.record_stream_batch("p", start, start + 10, 2)
    ddb.record_outcomes("p", outcome_rows(*[(p, "candidate", None) for p in range(0, 30, 5)]))
    counted: list[int] = []
    accounted = ddb._accounted

    def counting(program: str, start: int, end: int) -> int:
        counted.append(start)
        return accounted(program, start, end)

    monkeypatch.setattr(ddb, "_accounted", counting)
    assert ddb.resume_position("p") == 30
    assert counted == [0, 10, 20, 30]  # stops at the first incomplete batch
    counted.clear()
    assert ddb.unaccounted_events("p") == 4 and counted == [30, 40]
    ddb.record_outcomes("p", outcome_rows((30, "candidate", None), (35, "candidate", None)))
    counted.clear()
    assert ddb.resume_position("p") == 40 and counted == [30, 40]
