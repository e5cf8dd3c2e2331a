"""DynamoDBStore against moto's server on loopback; the behaviour tests run on SqliteStore too,
so the two backends are held to the same semantics."""

from __future__ import annotations

import json
import random
import zlib
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from uuid import uuid4

import pyarrow as pa
import pytest

from ceap.errors import ConfigError
from stores.base import CANDIDATE_COLUMNS, DEAD_LETTER_COLUMNS, CandidateStore, iso
from stores.dynamodb import DynamoDBStore
from stores.dynamodb.codec import DUE_SHARDS
from stores.spec import open_store
from stores.sqlite import SqliteStore

pytestmark = pytest.mark.integration

T0 = datetime(2026, 11, 25, 10, 0, tzinfo=UTC)
DAY = timedelta(days=1)


def dynamodb(endpoint: str) -> DynamoDBStore:
    """A store on fresh tables: every test gets its own prefix on the shared server."""
    prefix = f"t{uuid4().hex[:10]}_"
    return DynamoDBStore.from_spec(
        f"dynamodb://{prefix}?region=us-east-1&endpoint_url={endpoint}&consistent=true"
    )


@pytest.fixture
def ddb(moto_endpoint: str) -> Iterator[DynamoDBStore]:
    store = dynamodb(moto_endpoint)
    yield store
    store.close()


@pytest.fixture(params=["sqlite", "dynamodb"])
def store(request: pytest.FixtureRequest, tmp_path) -> Iterator[CandidateStore]:
    if request.param == "sqlite":
        s: CandidateStore = SqliteStore(tmp_path / "c.db")
    else:
        s = dynamodb(request.getfixturevalue("moto_endpoint"))
    yield s
    s.close()


def candidates(*rows: dict) -> pa.Table:
    defaults = {
        "program": "reviews", "customer_id": "c1", "subject_type": "product",
        "subject_id": "s1", "action": "review", "context": "{}", "score": 0.5,
        "model_id": "m1", "treatment": "control", "created_at": iso(T0),
        "expires_at": iso(T0 + 7 * DAY), "deliver_after": iso(T0), "status": "live",
    }  # fmt: skip
    full = [defaults | r for r in rows]
    return pa.table(
        {
            c: pa.array([r[c] for r in full], pa.float64() if c == "score" else pa.string())
            for c in CANDIDATE_COLUMNS
        }
    )


def outbox(*rows: dict) -> pa.Table:
    defaults = {
        "program": "reviews", "customer_id": "c1", "subject_id": "s1", "channel": "email",
        "send_after": iso(T0), "status": "pending", "attempts": 0,
        "idempotency_key": None, "reason": None, "template": "t1", "shadow": 0,
        "created_at": iso(T0),
    }  # fmt: skip
    full = [defaults | r for r in rows]
    for r in full:
        r["idempotency_key"] = r["idempotency_key"] or f"{r['customer_id']}:{r['subject_id']}"
    types = {"attempts": pa.int64(), "shadow": pa.int64()}
    return pa.table(
        {c: pa.array([r[c] for r in full], types.get(c, pa.string())) for c in defaults}
    )


def rows(store: CandidateStore, name: str, *key: str) -> dict[tuple, dict]:
    return {tuple(r[k] for k in key): r for r in store.table(name).to_pylist()}


def one(store: CandidateStore, subject_id: str = "s1", customer_id: str = "c1") -> dict:
    return rows(store, "candidates", "customer_id", "subject_id")[customer_id, subject_id]


def mark_sent(store: CandidateStore, subject_id: str, at: datetime) -> None:
    """What the dispatcher does once a message is out (it writes the store directly)."""
    if isinstance(store, SqliteStore):
        store.connection.execute(
            "UPDATE outbox SET status = 'sent', sent_at = ? WHERE subject_id = ?",
            (iso(at), subject_id),
        )
        return
    assert isinstance(store, DynamoDBStore)
    store.client.update_item(
        TableName=store.name("outbox"),
        Key={"customer_id": {"S": "c1"}, "sk": {"S": f"reviews#{subject_id}#email"}},
        UpdateExpression="SET #s = :sent, sent_at = :at REMOVE #due",
        ExpressionAttributeNames={"#s": "status", "#due": "due"},
        ExpressionAttributeValues={":sent": {"S": "sent"}, ":at": {"S": iso(at)}},
    )


def keys(table: pa.Table) -> set[tuple]:
    return set(zip(*(table.column(c).to_pylist() for c in table.column_names), strict=True))


# -- the same behaviour from both backends -------------------------------------------------
def test_reupsert_keeps_created_and_expires_of_a_live_row(store: CandidateStore) -> None:
    store.upsert_candidates(candidates({}))
    store.upsert_candidates(
        candidates({"created_at": iso(T0 + DAY), "expires_at": iso(T0 + 9 * DAY), "score": 0.9,
                    "context": '{"a": 1}', "model_id": None})
    )  # fmt: skip
    row = one(store)
    assert (row["created_at"], row["expires_at"], row["updated_at"]) == (
        iso(T0), iso(T0 + 7 * DAY), iso(T0))  # fmt: skip
    assert (row["score"], row["context"], row["model_id"], row["status"]) == (
        0.9, '{"a": 1}', None, "live")  # fmt: skip


def test_reupsert_after_expiry_starts_afresh(store: CandidateStore) -> None:
    store.upsert_candidates(candidates({"expires_at": iso(T0 + DAY)}))
    store.upsert_candidates(
        candidates({"created_at": iso(T0 + 2 * DAY), "expires_at": iso(T0 + 9 * DAY)})
    )
    row = one(store)
    assert (row["created_at"], row["expires_at"], row["updated_at"], row["status"]) == (
        iso(T0 + 2 * DAY), iso(T0 + 9 * DAY), iso(T0 + 2 * DAY), "live")  # fmt: skip


def test_consumed_and_suppressed_rows_are_left_alone(store: CandidateStore) -> None:
    store.upsert_candidates(candidates({}, {"subject_id": "s2", "status": "suppressed"}))
    assert store.record_response("reviews", "c1", "s1", {"stars": 5}) is True
    store.upsert_candidates(
        candidates({"score": 0.9, "created_at": iso(T0 + DAY)}, {"subject_id": "s2", "score": 0.9})
    )
    assert (one(store)["status"], one(store)["score"]) == ("consumed", 0.5)
    assert (one(store, "s2")["status"], one(store, "s2")["score"]) == ("suppressed", 0.5)


def test_repeated_key_in_one_batch_applies_in_order(store: CandidateStore) -> None:
    assert store.upsert_candidates(
        candidates({}, {"created_at": iso(T0 + DAY), "score": 0.9})
    ) == 2  # fmt: skip
    row = one(store)
    assert (row["created_at"], row["score"]) == (iso(T0), 0.9)


def test_outbox_row_once_queued_is_left_alone(store: CandidateStore) -> None:
    store.enqueue_outbox(outbox({}, {"subject_id": "s2", "status": "suppressed"}))
    later = {"send_after": iso(T0 + DAY), "template": None, "status": "pending", "attempts": 3}
    assert (
        store.enqueue_outbox(outbox(later, {**later, "subject_id": "s2"}, {"subject_id": "s3"}))
        == 1  # only s3 is new: what a re-run's funnel reports as queued
    )
    got = rows(store, "outbox", "subject_id")
    assert sorted(got) == [("s1",), ("s2",), ("s3",)]
    s1, s2 = got["s1",], got["s2",]
    assert (s1["send_after"], s1["template"], s1["status"], s1["attempts"]) == (
        iso(T0), "t1", "pending", 0)  # fmt: skip
    assert (s2["send_after"], s2["template"], s2["status"]) == (iso(T0), "t1", "suppressed")
    assert (got["s3",]["shadow"], got["s3",]["updated_at"]) == (0, iso(T0))
    assert (
        store.enqueue_outbox(outbox({"subject_id": "s4"}, {"subject_id": "s4", "template": "t2"}))
        == 1
    )
    assert rows(store, "outbox", "subject_id")["s4",]["template"] == "t1"  # the first one wins


def test_dead_letters_are_idempotent_by_program_stage_origin(store: CandidateStore) -> None:
    def letters(reason: str) -> pa.Table:
        return pa.table({
            "program": ["reviews", "reviews"], "stage": ["Score", "Score"],
            "reason": [reason, reason], "row": ['{"x": 1}', '{"x": 2}'],
            "time": [iso(T0)] * 2, "origin": ["f.parquet:1", "f.parquet:2"],
        })  # fmt: skip

    assert store.write_dead_letters(letters("boom")) == 2
    store.write_dead_letters(letters("bang"))  # a re-run adds none and changes none
    got = store.table("dead_letters").select(DEAD_LETTER_COLUMNS).to_pylist()
    assert sorted((r["origin"], r["reason"]) for r in got) == [
        ("f.parquet:1", "boom"), ("f.parquet:2", "boom")]  # fmt: skip


def test_opt_outs_add_and_remove(store: CandidateStore) -> None:
    store.add_opt_out("c1", None, None)
    store.add_opt_out("c1", "reviews", "email")
    store.add_opt_out("c1", "reviews", "email")  # already there: ignored
    store.add_opt_out("c2", None, "sms")
    assert keys(store.opt_outs()) == {
        ("c1", None, None), ("c1", "reviews", "email"), ("c2", None, "sms")}  # fmt: skip
    assert store.remove_opt_outs("c1") == 2
    assert store.remove_opt_outs("c1") == 0
    assert keys(store.opt_outs()) == {("c2", None, "sms")}


def test_response_marks_consumed_and_feeds_acted_keys(store: CandidateStore) -> None:
    store.upsert_candidates(candidates({}, {"subject_id": "s2"}))
    assert store.record_response("reviews", "c1", "s1", {"stars": 4}) is True
    assert store.record_response("reviews", "c9", "s9", None) is False  # kept, no candidate
    assert one(store)["status"] == "consumed"
    assert keys(store.live_keys("reviews", T0)) == {("c1", "s2", iso(T0))}
    assert keys(store.acted_keys("reviews")) == {("reviews", "c1", "s1"), ("reviews", "c9", "s9")}
    assert keys(store.acted_keys("other")) == set()
    assert sorted(store.table("responses").column("response").to_pylist()) == [
        "null", '{"stars": 4}']  # fmt: skip


def test_live_keys_exclude_expired_and_other_programs(store: CandidateStore) -> None:
    store.upsert_candidates(
        candidates({"deliver_after": iso(T0 + DAY)},
                   {"subject_id": "s2", "expires_at": iso(T0 + DAY)},
                   {"subject_id": "s3", "program": "other"})
    )  # fmt: skip
    assert keys(store.live_keys("reviews", T0 + 2 * DAY)) == {("c1", "s1", iso(T0 + DAY))}
    assert keys(store.live_keys("reviews", T0)) == {
        ("c1", "s1", iso(T0 + DAY)), ("c1", "s2", iso(T0))}  # fmt: skip


def test_contacts_cached_scores_and_runs(store: CandidateStore) -> None:
    store.upsert_candidates(candidates({}, {"subject_id": "s2", "score": None}))
    assert keys(store.cached_scores("reviews")) == {("c1", "s1", 0.5, "m1")}
    store.enqueue_outbox(
        outbox({}, {"subject_id": "s2", "send_after": iso(T0 - DAY)},
               {"subject_id": "s3", "status": "failed"})
    )  # fmt: skip
    assert keys(store.contacts(T0 - 2 * DAY)) == set()  # queued is not contacted yet
    mark_sent(store, "s1", T0)
    mark_sent(store, "s2", T0 - DAY)
    assert keys(store.contacts(T0 - DAY)) == {
        ("reviews", "c1", "s1", "email", iso(T0)), ("reviews", "c1", "s2", "email", iso(T0 - DAY))}  # fmt: skip
    assert keys(store.contacts(T0)) == {("reviews", "c1", "s1", "email", iso(T0))}
    store.record_run({"run_id": "r1", "program": "reviews", "mode": "batch", "funnel": {"in": 3}})
    run = store.table("runs").to_pylist()[0]
    assert (run["run_id"], json.loads(run["funnel"]), run["error"]) == ("r1", {"in": 3}, None)


@pytest.mark.slow
def test_thousand_candidates_round_trip_exactly(store: CandidateStore) -> None:
    rng = random.Random(7)
    batch = [
        {
            "customer_id": f"c{i % 97}", "subject_id": f"s{i}#{i % 3}",
            "score": None if i % 50 == 0 else rng.random() * 10 ** rng.randint(-5, 5),
            "model_id": None if i % 7 == 0 else "m2", "treatment": rng.choice(["a", "b", None]),
            "context": json.dumps({"i": i, "name": f"é{i}"}), "status": "live",
            "expires_at": iso(T0 + timedelta(seconds=200 * i)),  # half still live at T0 + DAY
        }
        for i in range(1000)
    ]  # fmt: skip
    table = candidates(*batch)
    assert store.upsert_candidates(table) == 1000
    got = store.table("candidates").select(CANDIDATE_COLUMNS)
    order = [("customer_id", "ascending"), ("subject_id", "ascending")]
    assert got.sort_by(order).to_pylist() == table.sort_by(order).to_pylist()
    rescored = table.set_column(
        CANDIDATE_COLUMNS.index("score"), "score", pa.array([i / 7 for i in range(1000)])
    ).set_column(
        CANDIDATE_COLUMNS.index("created_at"), "created_at", pa.array([iso(T0 + DAY)] * 1000)
    )
    store.upsert_candidates(rescored)  # the existing rows: conditional updates
    got = store.table("candidates").sort_by(order)
    assert got.column("score").to_pylist() == rescored.sort_by(order).column("score").to_pylist()
    live = [e > iso(T0 + DAY) for e in got.column("expires_at").to_pylist()]
    created = got.column("created_at").to_pylist()
    assert created == [iso(T0) if k else iso(T0 + DAY) for k in live]  # kept while live
    assert 400 < sum(live) < 600


def test_tables_carry_sqlite_column_names(tmp_path, ddb: DynamoDBStore) -> None:
    sqlite = SqliteStore(tmp_path / "c.db")
    for name in ("candidates", "outbox", "dead_letters", "runs", "opt_outs", "responses",
                 "event_outcomes", "stream_batches", "engagement_events", "suppressions"):  # fmt: skip
        assert ddb.table(name).column_names == sqlite.table(name).column_names, name
    for method, args in [("live_keys", ("p", T0)), ("acted_keys", (None,)), ("contacts", (T0,)),
                         ("opt_outs", ()), ("cached_scores", ("p",))]:  # fmt: skip
        expected = getattr(sqlite, method)(*args).column_names
        assert getattr(ddb, method)(*args).column_names == expected, method
    sqlite.close()


# -- DynamoDB only -------------------------------------------------------------------------
def test_tables_keys_and_ttl(ddb: DynamoDBStore) -> None:
    client = ddb.client
    schema = client.describe_table(TableName=ddb.name("candidates"))["Table"]["KeySchema"]
    assert [(k["AttributeName"], k["KeyType"]) for k in schema] == [
        ("customer_id", "HASH"), ("sk", "RANGE")]  # fmt: skip
    ttl = client.describe_time_to_live(TableName=ddb.name("candidates"))
    assert ttl["TimeToLiveDescription"] == {"TimeToLiveStatus": "ENABLED", "AttributeName": "ttl"}
    ddb.create_tables()  # idempotent
    ddb.upsert_candidates(candidates({"subject_id": "s#1"}))
    item = client.get_item(
        TableName=ddb.name("candidates"),
        Key={"customer_id": {"S": "c1"}, "sk": {"S": "reviews#s#1"}},
    )["Item"]
    assert item["ttl"] == {"N": str(int((T0 + 7 * DAY).timestamp()))}
    assert item["score"] == {"N": "0.5"}


def test_pending_outbox_rows_are_in_the_due_index(ddb: DynamoDBStore) -> None:
    ddb.enqueue_outbox(outbox({}, {"subject_id": "s2", "status": "shadowed"}))
    shard = f"{zlib.crc32(b'c1') % DUE_SHARDS:02d}"
    due = ddb.client.query(
        TableName=ddb.name("outbox"),
        IndexName="due",
        KeyConditionExpression="#due = :shard AND send_after <= :now",
        ExpressionAttributeNames={"#due": "due"},
        ExpressionAttributeValues={":shard": {"S": shard}, ":now": {"S": iso(T0)}},
    )["Items"]
    assert [i["subject_id"]["S"] for i in due] == ["s1"]


def test_customer_candidates_best_first(ddb: DynamoDBStore) -> None:
    ddb.upsert_candidates(
        candidates({"score": 0.2}, {"subject_id": "s2", "score": 0.9},
                   {"subject_id": "s3", "score": None}, {"subject_id": "s4", "program": "other"},
                   {"subject_id": "s5", "score": 0.99}, {"customer_id": "c2"})
    )  # fmt: skip
    ddb.record_response("reviews", "c1", "s5", None)
    got = ddb.customer_candidates("c1")
    assert [(r["program"], r["subject_id"], r["score"]) for r in got] == [
        ("reviews", "s2", 0.9), ("other", "s4", 0.5), ("reviews", "s1", 0.2),
        ("reviews", "s3", None)]  # fmt: skip
    assert got[0]["customer_id"] == "c1" and got[0]["context"] == "{}"
    assert [r["subject_id"] for r in ddb.customer_candidates("c1", "reviews", limit=2)] == [
        "s2", "s1"]  # fmt: skip
    assert ddb.customer_candidates("c3", consistent=True) == []


def test_a_consume_between_read_and_write_is_not_overwritten(
    ddb: DynamoDBStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    ddb.upsert_candidates(candidates({}))
    stale = ddb.get_many("candidates", [{"customer_id": "c1", "sk": "reviews#s1"}])
    ddb.record_response("reviews", "c1", "s1", None)  # lands after the upsert's read
    reads = iter([stale])
    real = ddb.get_many
    monkeypatch.setattr(ddb, "get_many", lambda *a: next(reads, None) or real(*a))
    ddb.upsert_candidates(candidates({"score": 0.9}))
    assert (one(ddb)["status"], one(ddb)["score"]) == ("consumed", 0.5)


def test_unprocessed_items_are_retried(ddb: DynamoDBStore, monkeypatch: pytest.MonkeyPatch) -> None:
    real, calls = ddb.client.batch_write_item, []

    def throttled(RequestItems: dict) -> dict:  # noqa: N803 - boto3's parameter name
        calls.append(len(next(iter(RequestItems.values()))))
        if len(calls) == 1:  # DynamoDB takes nothing the first time
            return {"UnprocessedItems": RequestItems}
        return real(RequestItems=RequestItems)

    monkeypatch.setattr(ddb.client, "batch_write_item", throttled)
    letters = pa.table({c: [f"{c}{i}" for i in range(30)] for c in DEAD_LETTER_COLUMNS})
    assert ddb.write_dead_letters(letters) == 30
    assert calls == [25, 25, 5]
    assert ddb.table("dead_letters").num_rows == 30


def test_from_spec_and_open_store(moto_endpoint: str, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CEAP_DYNAMODB_ENDPOINT", moto_endpoint)
    store = open_store("dynamodb://spec_?region=us-east-1")
    assert isinstance(store, DynamoDBStore) and store.prefix == "spec_" and not store.consistent
    assert store.client.meta.endpoint_url == moto_endpoint
    assert store.client.meta.region_name == "us-east-1"
    store.add_opt_out("c1", None, None)
    assert keys(store.opt_outs()) == {("c1", None, None)}
    lazy = DynamoDBStore.from_spec("dynamodb://absent_?create=false&consistent=1")
    assert lazy.consistent
    with pytest.raises(ConfigError, match="unknown"):
        DynamoDBStore.from_spec("dynamodb://x_?aws_secret_access_key=nope")
