"""Making a DynamoDB store's tables: the missing tables with their keys and global indexes
(stores/dynamodb/codec.py: ``TABLES``, ``key_schema``, ``INDEXES``), the indexes a table made
by an earlier version lacks, and the candidates' TTL. Idempotent: every start runs it."""

from __future__ import annotations

import time
from contextlib import suppress
from typing import TYPE_CHECKING

from ceap.errors import StoreError
from stores.dynamodb.codec import TABLES, global_indexes, key_schema

if TYPE_CHECKING:
    from stores.dynamodb.store import DynamoDBStore

INDEX_WAIT = 3600.0
"""Seconds a start waits for DynamoDB to fill an index added to a table with rows."""


def create_tables(store: DynamoDBStore) -> None:
    """Creates the missing tables and indexes, waits until they are active, enables the TTL."""
    client = store.client
    pages = client.get_paginator("list_tables").paginate()
    existing = {n for page in pages for n in page["TableNames"]}
    created = [t for t in TABLES if store.name(t) not in existing]
    for table in created:
        keys = key_schema(table)
        indexes, index_types = global_indexes(table)
        types = {a: t for a, t, _ in keys} | index_types
        client.create_table(
            TableName=store.name(table),
            KeySchema=[{"AttributeName": a, "KeyType": k} for a, _, k in keys],
            AttributeDefinitions=[
                {"AttributeName": a, "AttributeType": t} for a, t in types.items()
            ],
            BillingMode="PAY_PER_REQUEST",
            **({"GlobalSecondaryIndexes": indexes} if indexes else {}),
        )
    for table in created:
        client.get_waiter("table_exists").wait(TableName=store.name(table))
    for table in TABLES:
        if table not in created and global_indexes(table)[0]:
            add_indexes(store, table)
    ttl = client.describe_time_to_live(TableName=store.name("candidates"))
    if ttl["TimeToLiveDescription"]["TimeToLiveStatus"] in ("DISABLED", "DISABLING"):
        client.update_time_to_live(
            TableName=store.name("candidates"),
            TimeToLiveSpecification={"Enabled": True, "AttributeName": "ttl"},
        )


def add_indexes(store: DynamoDBStore, table: str, wait: float = INDEX_WAIT) -> None:
    """Adds the indexes ``table`` lacks (an outbox made before delivery feedback has no
    ``by_key`` and ``by_message_id``), one at a time as DynamoDB requires, and waits while
    DynamoDB fills each from the rows there: an index is read only once it is ACTIVE.

    Two processes starting at once may both try to add an index: the one DynamoDB refuses
    (ResourceInUse, LimitExceeded) waits for the other's."""
    name, (indexes, types) = store.name(table), global_indexes(table)
    deadline = time.monotonic() + wait
    while True:
        described = store.client.describe_table(TableName=name)["Table"]
        status = {i["IndexName"]: i["IndexStatus"] for i in described.get(
            "GlobalSecondaryIndexes", [])}  # fmt: skip
        missing = [i for i in indexes if i["IndexName"] not in status]
        busy = described["TableStatus"] != "ACTIVE" or set(status.values()) - {"ACTIVE"}
        if not missing and not busy:
            return
        if time.monotonic() > deadline:
            raise StoreError(
                f"DynamoDB table {name} is still building its indexes ({status}) after "
                f"{wait:.0f}s; start again once they are ACTIVE (aws dynamodb describe-table)"
            )
        if busy:
            time.sleep(5)
            continue
        keys = [k["AttributeName"] for k in missing[0]["KeySchema"]]
        with suppress(store.errors.ResourceInUseException, store.errors.LimitExceededException):
            store.client.update_table(
                TableName=name,
                AttributeDefinitions=[
                    {"AttributeName": a, "AttributeType": types[a]} for a in keys
                ],
                GlobalSecondaryIndexUpdates=[{"Create": missing[0]}],
            )
