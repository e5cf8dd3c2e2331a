"""Delivery feedback's DynamoDB layout (stores/dynamodb/feedback.py), against moto's server on
loopback: the indexes that find a message, an older outbox gaining them, and first-wins
engagement events under concurrent writers. The role's behaviour on every backend:
tests/stores/test_feedback_role.py."""

from __future__ import annotations

import threading
from collections import Counter
from collections.abc import Iterator
from uuid import uuid4

import pyarrow as pa
import pytest

from stores.base import OUTBOX_COLUMNS
from stores.dynamodb import DynamoDBStore
from stores.dynamodb.codec import key_schema

pytestmark = pytest.mark.integration


def spec(endpoint: str, prefix: str, create: bool = True) -> str:
    return (f"dynamodb://{prefix}?region=us-east-1&endpoint_url={endpoint}&consistent=true"
            f"{'' if create else '&create=false'}")  # fmt: skip


@pytest.fixture
def prefix() -> str:
    return f"t{uuid4().hex[:10]}_"


@pytest.fixture
def ddb(moto_endpoint: str, prefix: str) -> Iterator[DynamoDBStore]:
    store = DynamoDBStore.from_spec(spec(moto_endpoint, prefix))
    yield store
    store.close()


def indexes(store: DynamoDBStore) -> dict[str, tuple]:
    table = store.client.describe_table(TableName=store.name("outbox"))["Table"]
    return {
        i["IndexName"]: (
            tuple(k["AttributeName"] for k in i["KeySchema"]),
            i["Projection"]["ProjectionType"], i["IndexStatus"],
        )
        for i in table.get("GlobalSecondaryIndexes", [])
    }  # fmt: skip


def enqueue(store: DynamoDBStore, key: str) -> None:
    row = {"program": "reviews", "customer_id": "c1", "subject_id": key, "channel": "email",
           "send_after": "2026-01-01T00:00:00Z", "status": "pending", "attempts": 0,
           "idempotency_key": key, "reason": None, "template": None, "shadow": 0,
           "created_at": "2026-01-01T00:00:00Z"}  # fmt: skip
    cols = [*OUTBOX_COLUMNS, "template", "shadow", "created_at"]
    store.enqueue_outbox(pa.table({
        c: pa.array([row[c]], pa.string() if c in ("reason", "template") else None) for c in cols
    }))  # fmt: skip


def test_the_outbox_is_indexed_by_key_and_message_id_and_feedback_has_its_tables(ddb):
    assert indexes(ddb) == {
        "due": (("due", "send_after"), "ALL", "ACTIVE"),
        "by_key": (("idempotency_key",), "KEYS_ONLY", "ACTIVE"),
        "by_message_id": (("message_id",), "KEYS_ONLY", "ACTIVE"),
    }
    for table, key in (("engagement_events", ["idempotency_key", "sk"]),
                       ("suppressions", ["address"])):  # fmt: skip
        described = ddb.client.describe_table(TableName=ddb.name(table))["Table"]
        assert [k["AttributeName"] for k in described["KeySchema"]] == key
        assert [a for a, _, _ in key_schema(table)] == key
    enqueue(ddb, "k1")  # pending, no message id: in by_key only
    by_message = ddb.client.scan(TableName=ddb.name("outbox"), IndexName="by_message_id")
    assert by_message["Items"] == []
    assert ddb.find_message(key="k1")["status"] == "pending"


def test_an_outbox_made_before_feedback_gains_its_indexes_with_the_rows_there(
    moto_endpoint: str, prefix: str
) -> None:
    old = DynamoDBStore.from_spec(spec(moto_endpoint, prefix, create=False))
    old.client.create_table(  # the outbox as the store made it before delivery feedback
        TableName=old.name("outbox"), BillingMode="PAY_PER_REQUEST",
        KeySchema=[{"AttributeName": "customer_id", "KeyType": "HASH"},
                   {"AttributeName": "sk", "KeyType": "RANGE"}],
        AttributeDefinitions=[{"AttributeName": a, "AttributeType": "S"}
                              for a in ("customer_id", "sk", "due", "send_after")],
        GlobalSecondaryIndexes=[{
            "IndexName": "due", "Projection": {"ProjectionType": "ALL"},
            "KeySchema": [{"AttributeName": "due", "KeyType": "HASH"},
                          {"AttributeName": "send_after", "KeyType": "RANGE"}],
        }],
    )  # fmt: skip
    enqueue(old, "k0")
    old.close()
    store = DynamoDBStore.from_spec(spec(moto_endpoint, prefix))  # creates what is missing
    assert {n: s[2] for n, s in indexes(store).items()} == dict.fromkeys(
        ["due", "by_key", "by_message_id"], "ACTIVE"
    )
    assert store.find_message(key="k0")["customer_id"] == "c1"  # a row from before
    store.create_tables()  # nothing left to add
    store.close()


def test_concurrent_writers_of_the_same_events_record_each_once(moto_endpoint, prefix, ddb):
    events = [
        {"program": "reviews", "customer_id": "c1", "subject_id": "s1", "channel": "email",
         "step": "email", "idempotency_key": f"k{i % 5}", "event": "clicked",
         "at": "2026-01-02T01:00:00Z", "detail": None, "event_id": f"https://a/{i}"}
        for i in range(40)
    ]  # fmt: skip
    stores = [ddb, DynamoDBStore.from_spec(spec(moto_endpoint, prefix, create=False))]
    start, results = threading.Barrier(len(stores)), []

    def record(store: DynamoDBStore) -> None:
        start.wait()
        results.append(store.record_engagement(events))

    threads = [threading.Thread(target=record, args=(s,)) for s in stores]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    stores[1].close()
    assert len(results) == 2
    assert Counter(a + b for a, b in zip(*results, strict=True)) == {1: 40}  # one writer won each
    assert ddb.table("engagement_events").num_rows == 40
    assert ddb.record_engagement(events[:1]) == [False]
