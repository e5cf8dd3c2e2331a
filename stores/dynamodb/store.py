"""The cloud store: the CandidateStore contract on DynamoDB, with SqliteStore's semantics.

Spec: ``dynamodb://<table-prefix>?region=..&endpoint_url=..&consistent=true`` (endpoint also
from ``$CEAP_DYNAMODB_ENDPOINT``; ``create=false`` skips creating missing tables). Credentials
come from boto3's default chain (environment, profile, role), never from the spec.

Tables, on-demand billing, partition key / sort key ``sk`` (fields are also plain attributes):

- ``candidates``: customer_id / ``program#subject_id``: the Serving API reads a customer's
  candidates with one Query. ``ttl`` = expires_at in epoch seconds lets DynamoDB delete
  expired rows; reads still compare expires_at, as deletion lags by up to days.
- ``outbox``: customer_id / ``program#subject_id#step`` (a journey step, DESIGN §9: the
  channel type unless named, so ``program#subject_id#channel`` for a program's default
  steps; an item without ``step`` is its channel's): a customer's contacts (frequency caps)
  are one Query. Due rows: the sparse GSI ``due`` (partition ``due`` = crc32(customer_id)
  % 16 as ``00``..``15``, sort send_after) holds pending rows only (not ``waiting`` ones): a
  dispatcher Queries the 16 shards for ``send_after <= now`` and REMOVEs ``due`` when a row
  leaves pending. Sharded because one ``pending`` partition would be hot. Leasing (a
  conditional UpdateItem per row) and what it guarantees: stores/dynamodb/outbox.py; waiting
  steps and the facts of ``when:`` conditions: stores/dynamodb/journeys.py. The KEYS_ONLY
  GSIs ``by_key`` (idempotency_key) and ``by_message_id`` find a row from its feedback:
  stores/dynamodb/feedback.py.
- ``dead_letters``: program / ``stage#origin``; ``opt_outs``: customer_id / ``program#channel``
  (``*`` = all); ``responses``: customer_id / ``program#subject_id#created_at``; ``runs``: run_id.
- the streaming ledger's ``event_outcomes``, ``event_identities`` and ``stream_batches``
  (stores/dynamodb/ledger.py), the stream readers' ``stream_checkpoints``
  (stores/dynamodb/checkpoints.py), delivery feedback's ``engagement_events`` and
  ``suppressions`` (stores/dynamodb/feedback.py).

Program, stage and channel names must not contain ``#`` (a key's last part may). Pipeline
snapshots (live_keys, contacts, opt_outs, cached_scores, table) are filtered Scans.

Writes read the keys first (BatchGetItem, consistent). Keys not there yet are written with
BatchWriteItem, 25 a request, retrying UnprocessedItems. Candidates already there, which the
Serving API also writes (consumed, expired), are changed one by one (8 threads) with
UpdateItem/PutItem guarded by the predicate of SQLite's upsert branch taken for the row read:
when the row changed meanwhile, the write fails, the row is read again and the branch chosen
anew, so a response's ``consumed`` is never overwritten. (Transactions would guard batches
too, at twice the write cost; AWS advises against them for bulk loads.) The race left: two
writers creating the same new key at once, where the later Put replaces the earlier row whole.
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import AbstractContextManager, nullcontext
from functools import cached_property
from typing import TYPE_CHECKING, Any

import boto3
import pyarrow as pa
from botocore.config import Config
from botocore.exceptions import NoRegionError

from ceap.errors import StoreError
from stores.base import CANDIDATE_COLUMNS, DEAD_LETTER_COLUMNS, CandidateStore
from stores.dynamodb.codec import (
    ATTEMPTS,
    COLUMNS,
    OUTBOX_INSERT,
    THREADS,
    backoff,
    chunks,
    due_shard,
    epoch,
    from_item,
    key_item,
    key_schema,
    sort_key,
    table_key,
    to_arrow,
    to_item,
    to_number,
    with_names,
    write_rounds,
)
from stores.dynamodb.customers import DynamoDBCustomers
from stores.dynamodb.feedback import DynamoDBFeedback
from stores.dynamodb.journeys import DynamoDBJourneys
from stores.dynamodb.ledger import DynamoDBLedger
from stores.dynamodb.tables import create_tables
from stores.leasing import LeasedRow, LeaseRequest
from stores.ports import Role
from stores.uri import StoreSpec

if TYPE_CHECKING:
    from stores.dynamodb.outbox import DynamoDBOutbox

_MUTABLE = ["subject_type", "action", "context", "score", "model_id", "treatment", "deliver_after"]
# SQLite's upsert branches as conditions on the stored row (:new_created: the incoming row's)
_KEEP = "#status = :live AND #expires_at > :new_created"
_RENEW = f"attribute_exists(#sk) AND NOT #status IN (:consumed, :suppressed) AND NOT ({_KEEP})"


class DynamoDBStore(
    DynamoDBCustomers, DynamoDBLedger, DynamoDBFeedback, DynamoDBJourneys, CandidateStore
):
    """Args:
    prefix: prepended to every table name (``ceap_`` gives ``ceap_candidates`` ...).
    region: AWS region (default: boto3's, from the environment).
    endpoint_url: a DynamoDB-compatible endpoint (DynamoDB Local, moto) instead of AWS.
    consistent: strongly consistent snapshots and queries (twice the read cost); the
        read-modify-write paths always read consistently.
    """

    roles = frozenset(Role)

    def __init__(
        self,
        prefix: str = "",
        region: str | None = None,
        endpoint_url: str | None = None,
        consistent: bool = False,
    ) -> None:
        self.prefix, self.consistent = prefix, consistent
        config = Config(retries={"max_attempts": 10, "mode": "standard"})
        self.client = boto3.client(
            "dynamodb", region_name=region, endpoint_url=endpoint_url, config=config
        )
        self.errors = self.client.exceptions

    @classmethod
    def from_spec(cls, spec: str | StoreSpec) -> DynamoDBStore:
        """``dynamodb://<prefix>?region=..&endpoint_url=..&consistent=true&create=false``."""
        parsed = StoreSpec.parse(spec)
        if parsed.kind != "dynamodb":
            raise StoreError(f"store {parsed}: not a DynamoDB store")
        spec, params = parsed.text, parsed.params
        truthy = ("1", "true", "yes")
        _require_aws(spec)
        try:
            store = cls(
                prefix=parsed.prefix,
                region=params.get("region"),
                endpoint_url=params.get("endpoint_url") or os.environ.get("CEAP_DYNAMODB_ENDPOINT"),
                consistent=params.get("consistent", "").lower() in truthy,
            )
        except NoRegionError:
            raise StoreError(
                f"store {spec}: no AWS region; add ?region=eu-west-1 to the spec or set "
                "AWS_DEFAULT_REGION"
            ) from None
        if params.get("create", "true").lower() in truthy:
            store.create_tables()
        return store

    def name(self, table: str) -> str:
        return f"{self.prefix}{table}"

    def create_tables(self) -> None:
        """Creates the missing tables and indexes (stores/dynamodb/tables.py)."""
        create_tables(self)

    # -- request helpers -------------------------------------------------------------------
    def read(
        self, op: str, table: str, columns: list[str] | None, values: dict, **expr: Any
    ) -> list[dict]:
        """All pages of a Scan or Query (``expr``: FilterExpression, KeyConditionExpression ...)."""
        request: dict[str, Any] = {"TableName": self.name(table), "ConsistentRead": self.consistent}
        if columns:
            request["ProjectionExpression"] = ", ".join(f"#{c}" for c in columns)
        pages = self.client.get_paginator(op).paginate(**with_names(request | expr, values))
        return [from_item(i) for page in pages for i in page["Items"]]

    def _drain(self, call: Callable[..., dict], request: dict, unprocessed: str) -> Iterator[dict]:
        """Repeats a batch call on what DynamoDB left ``unprocessed`` (throttling), with backoff."""
        for attempt in range(ATTEMPTS):
            response = call(RequestItems=request)
            yield response
            if not (request := response.get(unprocessed)):
                return
            backoff(attempt)
        raise RuntimeError(f"DynamoDB left {unprocessed} after {ATTEMPTS} rounds")

    def get_many(self, table: str, records: list[dict]) -> dict[tuple, dict]:
        """BatchGetItem (consistent) of the records' keys; the items found, by key."""
        found: dict[tuple, dict] = {}
        for chunk in chunks(records, 100):
            keys = [key_item(r, table) for r in chunk]
            request = {self.name(table): {"Keys": keys, "ConsistentRead": True}}
            for response in self._drain(self.client.batch_get_item, request, "UnprocessedKeys"):
                for item in map(from_item, response["Responses"].get(self.name(table), [])):
                    found[table_key(item, table)] = item
        return found

    def _write_many(self, table: str, requests: list[dict]) -> None:
        """BatchWriteItem in chunks of 25."""
        for chunk in chunks(requests, 25):
            request = {self.name(table): chunk}
            list(self._drain(self.client.batch_write_item, request, "UnprocessedItems"))

    def put_new(self, table: str, record: dict) -> bool:
        """PutItem of ``record`` unless its key is there (one atomic step); True if written."""
        put = self._put(table, record, f"attribute_not_exists(#{key_schema(table)[0][0]})", {})
        try:
            self.client.put_item(**put)
        except self.errors.ConditionalCheckFailedException:
            return False
        return True

    def _put(self, table: str, record: dict, condition: str, values: dict) -> dict:
        """put_item arguments: the whole item, written only if ``condition`` holds."""
        op = {"TableName": self.name(table), "Item": to_item(record)}
        return with_names(op | {"ConditionExpression": condition}, values)

    def _update(self, table: str, key: dict, fields: dict, condition: str, values: dict) -> dict:
        """update_item arguments: SET ``fields``, REMOVE the null ones (as SQL sets NULL)."""
        sets = ", ".join(f"#{k} = :{k}" for k, v in fields.items() if to_number(v) is not None)
        removes = ", ".join(f"#{k}" for k, v in fields.items() if to_number(v) is None)
        expr = f"SET {sets}" + (f" REMOVE {removes}" if removes else "")
        op = {"TableName": self.name(table), "Key": to_item(key), "UpdateExpression": expr}
        return with_names(op | {"ConditionExpression": condition}, values | fields)

    # -- pipeline writes -------------------------------------------------------------------
    def writing(self) -> AbstractContextManager:
        """Each write is its own: items are written in conditional batches, not in one
        transaction (a crash between a batch's candidates and its outbox rows is repaired
        by the re-run, which writes the missing rows and leaves the others)."""
        return nullcontext()

    def upsert_candidates(self, candidates: pa.Table) -> int:
        rows = candidates.select(CANDIDATE_COLUMNS).to_pylist()
        for r in rows:
            r.update(sk=sort_key(r["program"], r["subject_id"]), updated_at=r["created_at"])
            r["ttl"] = epoch(r["expires_at"])
        for batch in write_rounds(rows):
            old = self.get_many("candidates", batch)
            fresh = [{"PutRequest": {"Item": to_item(r)}} for r in batch if table_key(r) not in old]
            self._write_many("candidates", fresh)
            there = [r for r in batch if table_key(r) in old]
            with ThreadPoolExecutor(THREADS) as pool:  # map() re-raises the first failure
                list(pool.map(self._upsert_existing, there, [old[table_key(r)] for r in there]))
        return len(rows)

    def _upsert_existing(self, row: dict, existing: dict | None) -> None:
        """Writes one candidate under the predicate of SQLite's branch for ``existing``; when a
        concurrent write changed the row since (ConditionalCheckFailed), reads it again."""
        values = {s: s for s in ("live", "consumed", "suppressed")}
        values["new_created"] = row["created_at"]
        for _ in range(ATTEMPTS):
            status = existing.get("status") if existing else None
            if status in ("consumed", "suppressed"):
                return  # the customer acted or was excluded: left alone
            if existing is None:  # deleted by the TTL since it was read
                write = self._put("candidates", row, "attribute_not_exists(#sk)", values)
            elif status == "live" and existing.get("expires_at", "") > row["created_at"]:
                # still live: keeps created_at, expires_at (so ttl) and updated_at
                fields = {k: row[k] for k in _MUTABLE} | {"status": "live"}
                key = {"customer_id": row["customer_id"], "sk": row["sk"]}
                write = self._update("candidates", key, fields, _KEEP, values)
            else:  # expired, or marked expired by the Serving API: starts afresh
                write = self._put("candidates", row | {"status": "live"}, _RENEW, values)
            try:
                (self.client.update_item if "Key" in write else self.client.put_item)(**write)
                return
            except self.errors.ConditionalCheckFailedException:
                got = self.client.get_item(
                    TableName=self.name("candidates"), Key=key_item(row), ConsistentRead=True
                )
                existing = from_item(got["Item"]) if "Item" in got else None
        raise RuntimeError(f"candidate {table_key(row)} kept changing under concurrent writes")

    def _insert_new(self, table: str, records: list[dict]) -> int:
        """INSERT ... DO NOTHING: writes the records whose key is not there yet (of repeated
        keys the first), with BatchWriteItem. Rows already there, which the dispatcher may be
        changing, are never written; see the module docstring for the race on new keys."""
        first: dict[tuple, dict] = {}
        for r in records:
            first.setdefault(table_key(r, table), r)
        old = self.get_many(table, list(first.values()))
        puts = [{"PutRequest": {"Item": to_item(r)}} for k, r in first.items() if k not in old]
        self._write_many(table, puts)
        return len(puts)

    def enqueue_outbox(self, rows: pa.Table) -> int:
        """One item per candidate and step (``step``: a column of ``rows``, else the channel)."""
        if "step" not in rows.column_names:
            rows = rows.append_column("step", rows.column("channel"))
        records = rows.select(OUTBOX_INSERT).to_pylist()
        for r in records:
            r["step"] = r["step"] or r["channel"]
            r["sk"] = sort_key(r["program"], r["subject_id"], r["step"])
            r["updated_at"] = r["created_at"]
            if r["status"] == "pending":  # the sparse due index: pending rows only, not waiting
                r["due"] = due_shard(r["customer_id"])
        return self._insert_new("outbox", records)

    def write_dead_letters(self, rows: pa.Table) -> int:
        records = rows.select(DEAD_LETTER_COLUMNS).to_pylist()
        for r in records:
            r["sk"] = sort_key(r["stage"], r["origin"])
        return self._insert_new("dead_letters", records)

    def record_run(self, run: dict[str, Any]) -> None:
        record = {k: run.get(k) for k in COLUMNS["runs"]}
        if record["funnel"] is not None:
            record["funnel"] = json.dumps(record["funnel"])
        self.client.put_item(TableName=self.name("runs"), Item=to_item(record))

    def table(self, name: str) -> pa.Table:
        if name not in COLUMNS:
            raise ValueError(f"no table {name!r}")
        items = self.read("scan", name, None, {})
        if name == "outbox":  # written before journeys: the channel's step
            for item in items:
                item.setdefault("step", item.get("channel"))
        return to_arrow(items, COLUMNS[name])

    def close(self) -> None:
        self.client.close()

    # -- the dispatcher's outbox: stores/dynamodb/outbox.py -----------------------------------
    @cached_property
    def _outbox(self) -> DynamoDBOutbox:
        from stores.dynamodb.outbox import DynamoDBOutbox

        return DynamoDBOutbox(self)

    def lease_outbox(self, request: LeaseRequest) -> list[LeasedRow]:
        """Each row's claim is atomic (a conditional UpdateItem), the guards are read after
        it: see stores/dynamodb/outbox.py for what that guarantees."""
        return self._outbox.lease(request)

    def mark_outbox(self, owner: str, updates: list[dict], clock: str) -> int:
        return self._outbox.mark(owner, updates, clock)

    def outbox_leases(self, owner_prefix: str, clock: str) -> dict[str, list[str]]:
        return self._outbox.leases(owner_prefix, clock)

    def release_outbox(self, owner: str, keys: list[str]) -> int:
        return self._outbox.release(owner, keys)

    def outbox_status(self, program: str | None = None, channel: str | None = None) -> pa.Table:
        return self._outbox.status(program, channel)


def _require_aws(spec: str) -> None:
    """botocore's own word for missing credentials ("Unable to locate credentials") names
    neither the store nor the fix: say both before the first call."""
    if boto3.session.Session().get_credentials() is None:
        raise StoreError(
            f"store {spec}: no AWS credentials found. Set AWS_ACCESS_KEY_ID and "
            "AWS_SECRET_ACCESS_KEY (or AWS_PROFILE, or run with an IAM role); for DynamoDB "
            "Local or moto, any keys do, with ?endpoint_url=http://127.0.0.1:8000 in the spec "
            "or CEAP_DYNAMODB_ENDPOINT"
        )
