"""Journeys' DynamoDB layout (stores/dynamodb/journeys.py), against moto's server on loopback:
items from before journeys read as their channel's step, ``waiting`` rows stay out of the
sparse ``due`` index until settled, and the lease facts of ``when:`` conditions cost a bounded
number of requests. The behaviour on every backend: tests/stores/test_journey_contract.py."""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterator
from uuid import uuid4

import pytest

from stores.dynamodb import DynamoDBStore
from stores.dynamodb.codec import due_shard, to_item
from stores.leasing import LeaseRequest
from tests.stores.test_contract import LATER, NOW
from tests.stores.test_journey_contract import EARLIER, add_candidates, send, steps

pytestmark = pytest.mark.integration


@pytest.fixture
def ddb(moto_endpoint: str) -> Iterator[DynamoDBStore]:
    store = DynamoDBStore.from_spec(
        f"dynamodb://t{uuid4().hex[:10]}_?region=us-east-1&endpoint_url={moto_endpoint}"
        "&consistent=true"
    )
    yield store
    store.close()


def due(store: DynamoDBStore) -> dict[str, str]:
    """idempotency key -> ``due`` shard of the rows in the sparse index."""
    items = store.client.scan(TableName=store.name("outbox"), IndexName="due")["Items"]
    return {i["idempotency_key"]["S"]: i["due"]["S"] for i in items}


def test_an_item_from_before_journeys_is_its_channels_step(ddb: DynamoDBStore) -> None:
    old = {"customer_id": "c1", "sk": "p#s1#email", "program": "p", "subject_id": "s1",
           "channel": "email", "send_after": EARLIER, "status": "pending", "attempts": 0,
           "idempotency_key": "k-old", "shadow": 0, "created_at": EARLIER,
           "due": due_shard("c1")}  # as the store wrote it: no ``step``  # fmt: skip
    ddb.client.put_item(TableName=ddb.name("outbox"), Item=to_item(old))
    # the default step's key is the key it had: the pipeline's re-run adds nothing
    assert ddb.enqueue_outbox(steps({"step": "email", "idempotency_key": "k-old"})) == 0
    assert ddb.enqueue_outbox(steps({"step": "nudge", "status": "waiting"})) == 1
    assert {(r["step"], r["channel"]) for r in ddb.table("outbox").to_pylist()} == {
        ("email", "email"), ("nudge", "email")
    }  # fmt: skip
    leased = ddb.lease_outbox(LeaseRequest("me", NOW, NOW, LATER, 10, ["p"]))
    assert [(r["idempotency_key"], r["step"]) for r in leased] == [("k-old", "email")]
    assert ddb.find_message(key="k-old")["step"] == "email"


def test_waiting_rows_join_the_due_index_only_when_settled_pending(ddb: DynamoDBStore) -> None:
    ddb.enqueue_outbox(steps(
        {"step": "invite", "idempotency_key": "k-invite"},
        {"step": "nudge", "status": "waiting", "idempotency_key": "k-nudge"},
        {"step": "survey", "status": "waiting", "idempotency_key": "k-survey"},
    ))  # fmt: skip
    assert due(ddb) == {"k-invite": due_shard("c1")}
    row = {"program": "p", "customer_id": "c1", "subject_id": "s1"}
    settled = ddb.settle_waiting([
        row | {"step": "nudge", "status": "pending", "send_after": NOW},
        row | {"step": "survey", "status": "suppressed", "reason": "parent step invite failed"},
    ])  # fmt: skip
    assert settled == 2
    assert due(ddb) == {"k-invite": due_shard("c1"), "k-nudge": due_shard("c1")}
    items = {r["step"]: r for r in ddb.table("outbox").to_pylist()}
    assert items["nudge"]["reason"] is None and items["nudge"]["updated_at"] is not None


def test_lease_facts_cost_two_queries_a_candidate_and_one_a_message_sent(
    ddb: DynamoDBStore,
) -> None:
    subjects = [f"s{i}" for i in range(5)]
    add_candidates(ddb, *subjects)
    later = [
        {"subject_id": s, "step": step, "channel": channel, "send_after": LATER}
        for s in subjects
        for step, channel in (("reminder", "push"), ("banner", "in_app"))
    ]
    ddb.enqueue_outbox(steps({"subject_id": "s0", "step": "invite"},
                             {"subject_id": "s1", "step": "invite"}, *later))  # fmt: skip
    send(ddb, "c1|s0|invite", "c1|s1|invite")  # two candidates were mailed
    ddb.record_engagement([{
        "program": "p", "customer_id": "c1", "subject_id": "s0", "channel": "email",
        "step": "invite", "idempotency_key": "c1|s0|invite", "event": "opened", "at": NOW,
    }])  # fmt: skip
    leased = ddb.lease_outbox(LeaseRequest("me", LATER, NOW, LATER, 100, ["p"]))
    assert len(leased) == 10  # two rows of each candidate
    queries: Counter = Counter()

    def count(params: dict, **_: object) -> None:
        queries[params["TableName"].removeprefix(ddb.prefix)] += 1

    ddb.client.meta.events.register("provide-client-params.dynamodb.Query", count)
    ddb.attach_journey_facts(leased)
    # a candidate: one Query of its responses and one of its outbox rows, however many of
    # its rows are leased; then one of engagement events per message handed to a provider
    assert queries == {"responses": 5, "outbox": 5, "engagement_events": 2}
    engaged = {r["subject_id"]: r["engaged"] for r in leased}
    assert engaged == {"s0": [("invite", "opened")], "s1": [], "s2": [], "s3": [], "s4": []}
