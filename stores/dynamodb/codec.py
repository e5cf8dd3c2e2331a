"""How CEAP's records are kept in DynamoDB: table layouts, keys, indexes, typed items and the
expression placeholders every request needs. Shared by the store (stores/dynamodb/store.py), its
outbox (stores/dynamodb/outbox.py), its streaming ledger (stores/dynamodb/ledger.py) and its
delivery feedback (stores/dynamodb/feedback.py), so none reaches into another's privates."""

from __future__ import annotations

import functools
import math
import re
import time
import zlib
from collections.abc import Iterator
from datetime import datetime
from decimal import Decimal
from typing import Any

import pyarrow as pa
from boto3.dynamodb.types import TypeDeserializer, TypeSerializer

from ceap.resilience import backoff_delay
from stores.base import CANDIDATE_COLUMNS, DEAD_LETTER_COLUMNS, ENGAGEMENT_COLUMNS, OUTBOX_COLUMNS

OUTBOX_INSERT = [*OUTBOX_COLUMNS, "template", "shadow", "created_at", "step"]
# table() returns SqliteStore's columns in its order (dead_letters.id has no equivalent: null)
COLUMNS = {
    "candidates": [*CANDIDATE_COLUMNS, "updated_at"],
    "outbox": ["program", "customer_id", "subject_id", "channel", "step", "send_after", "status",
               "attempts", "idempotency_key", "reason", "template", "shadow", "created_at",
               "updated_at", "sent_at", "lease_owner", "lease_until", "next_attempt_at",
               "address", "message_id"],
    "dead_letters": ["id", *DEAD_LETTER_COLUMNS],
    "opt_outs": ["customer_id", "program", "channel", "created_at"],
    "responses": ["program", "customer_id", "subject_id", "response", "created_at", "response_id"],
    "runs": ["run_id", "program", "mode", "started_at", "finished_at", "status", "funnel", "error"],
    "event_outcomes": ["program", "position", "outcome", "reason", "customer_id", "subject_id",
                       "identity", "time"],
    "stream_batches": ["program", "start", "end", "size", "read_at"],
    "engagement_events": [*ENGAGEMENT_COLUMNS, "event_id", "received_at"],
    "suppressions": ["address", "reason", "at"],
}  # fmt: skip
SERVING_COLUMNS = [
    "program", "subject_type", "subject_id", "action", "score", "model_id", "treatment",
    "context", "created_at", "expires_at", "deliver_after", "status",
]  # fmt: skip
TYPES = {"score": pa.float64()} | dict.fromkeys(
    ["attempts", "shadow", "id", "position", "start", "end", "size"], pa.int64()
)
PARTITION = {  # the others: customer_id
    "dead_letters": "program", "runs": "run_id", "engagement_events": "idempotency_key",
    "suppressions": "address",
}  # fmt: skip
UNSORTED = {"runs", "suppressions"}  # keyed by their partition alone, the others add ``sk``
KEYS = {  # the tables whose key is not PARTITION / ``sk``: the ledger's, positions as numbers
    "event_outcomes": (("pk", "S"), ("position", "N")),
    "event_identities": (("pk", "S"), ("position", "N")),
    "stream_batches": (("program", "S"), ("start", "N")),
    "stream_checkpoints": (("program", "S"), ("sk", "S")),
}
TABLES = list(dict.fromkeys([*COLUMNS, *KEYS]))
"""Every table of a store, as create_tables makes them."""
INDEXES = {  # table -> (name, partition, sort or None, projection) of its global indexes
    "outbox": [
        ("due", "due", "send_after", "ALL"),  # sparse: pending rows (stores/dynamodb/outbox.py)
        ("by_key", "idempotency_key", None, "KEYS_ONLY"),  # stores/dynamodb/feedback.py
        ("by_message_id", "message_id", None, "KEYS_ONLY"),  # sparse: rows sent
    ],
}
DUE_SHARDS = 16
ATTEMPTS = 10  # rounds of unprocessed items / of conditional writes losing a race
THREADS = 8  # concurrent conditional writes (boto3 clients are thread-safe)
_SER, _DE = TypeSerializer(), TypeDeserializer()


def sort_key(*parts: str) -> str:
    return "#".join(parts)


def due_shard(customer_id: str) -> str:
    """The ``due`` index partition of a customer's pending outbox rows (``00``..``15``)."""
    return f"{zlib.crc32(customer_id.encode()) % DUE_SHARDS:02d}"


@functools.cache
def key_schema(table: str) -> list[tuple[str, str, str]]:
    """(attribute, type ``S``/``N``, ``HASH``/``RANGE``) of each part of a table's key."""
    if table in KEYS:
        (partition, ptype), (sort, stype) = KEYS[table]
        return [(partition, ptype, "HASH"), (sort, stype, "RANGE")]
    partition = (PARTITION.get(table, "customer_id"), "S", "HASH")
    return [partition] if table in UNSORTED else [partition, ("sk", "S", "RANGE")]


def global_indexes(table: str) -> tuple[list[dict[str, Any]], dict[str, str]]:
    """A table's GlobalSecondaryIndexes as create_table takes them, and the types of their
    key attributes (all text)."""
    specs: list[dict[str, Any]] = []
    types: dict[str, str] = {}
    for name, partition, sort, projection in INDEXES.get(table, []):
        keys = [(partition, "HASH")] + ([(sort, "RANGE")] if sort else [])
        specs.append({
            "IndexName": name, "Projection": {"ProjectionType": projection},
            "KeySchema": [{"AttributeName": a, "KeyType": k} for a, k in keys],
        })  # fmt: skip
        types |= dict.fromkeys((a for a, _ in keys), "S")
    return specs, types


def to_number(value: Any) -> Any:
    """DynamoDB numbers are Decimals; repr() is the shortest text that round-trips a float.
    NaN becomes null (as SQLite stores it), a bool 0/1."""
    if isinstance(value, bool):
        return int(value)
    if isinstance(value, float):
        return None if math.isnan(value) else Decimal(repr(value))
    return value


def to_item(record: dict[str, Any]) -> dict[str, Any]:
    """A typed DynamoDB item; null fields are left out (so ``attribute_exists`` = not null)."""
    typed = {k: to_number(v) for k, v in record.items()}
    return {k: _SER.serialize(v) for k, v in typed.items() if v is not None}


def from_item(item: dict[str, Any]) -> dict[str, Any]:
    return {k: _DE.deserialize(v) for k, v in item.items()}


def typed_value(name: str, value: Any) -> Any:
    """A stored Decimal as the Python number SQLite gives (float score, int counters)."""
    if not isinstance(value, Decimal):
        return value
    return float(value) if TYPES.get(name) == pa.float64() else int(value)


def to_arrow(records: list[dict[str, Any]], columns: list[str]) -> pa.Table:
    arrays = [
        pa.array([typed_value(c, r.get(c)) for r in records], TYPES.get(c, pa.string()))
        for c in columns
    ]
    return pa.table(arrays, names=columns)


def with_names(request: dict[str, Any], values: dict[str, Any]) -> dict[str, Any]:
    """Adds exactly the ``#name`` / ``:value`` placeholders the request's expressions use
    (DynamoDB rejects unused ones; ``#`` because status, ttl, time ... are reserved words)."""
    text = " ".join(v for k, v in request.items() if k.endswith("Expression"))
    if names := set(re.findall(r"#(\w+)", text)):
        request["ExpressionAttributeNames"] = {f"#{n}": n for n in names}
    if used := set(re.findall(r":(\w+)", text)):
        request["ExpressionAttributeValues"] = {
            f":{k}": _SER.serialize(to_number(values[k])) for k in used
        }
    return request


def epoch(ts: str | None) -> int | None:
    return int(datetime.fromisoformat(ts).timestamp()) if ts else None


def backoff(attempt: int) -> None:
    time.sleep(backoff_delay(attempt))


def chunks(items: list, size: int) -> Iterator[list]:
    return (items[i : i + size] for i in range(0, len(items), size))


def table_key(record: dict, table: str = "candidates") -> tuple:
    """The values of a record's key attributes (``key_schema``), in order."""
    return tuple(record[a] for a, _, _ in key_schema(table))


def key_item(record: dict, table: str = "candidates") -> dict[str, Any]:
    return to_item({a: record[a] for a, _, _ in key_schema(table)})


def write_rounds(records: list[dict]) -> list[list[dict]]:
    """Round n holds each key's n-th record: one BatchWriteItem may not name an item twice,
    and SQLite applies repeated keys in input order."""
    rounds: list[list[dict]] = []
    seen: dict[tuple, int] = {}
    for r in records:
        n = seen[table_key(r)] = seen.get(table_key(r), -1) + 1
        rounds.extend([] for _ in range(n + 1 - len(rounds)))
        rounds[n].append(r)
    return rounds
