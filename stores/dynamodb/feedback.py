"""Delivery feedback on DynamoDB (DESIGN §8): ``find_message``, ``record_engagement``,
``suppress_addresses`` and ``suppressed_addresses`` of DynamoDBStore, with SqliteFeedback's
semantics (stores/sqlite/feedback.py). A mixin over the store's request helpers.

Finding a message. The outbox is keyed by customer and ``program#subject_id#step``, while
feedback names a row by its idempotency key (the tokens in links, ``POST /v1/deliveries``) or
by the provider's message id (SES, WhatsApp). Two KEYS_ONLY global indexes of the outbox map
each to the row's key: ``by_key`` (idempotency_key: every row) and ``by_message_id`` (sparse:
rows ``mark_outbox`` gave a message id). ``find_message`` is one Query of an index and one
GetItem of the row (strongly consistent: its status, address and message id as of now).
Why indexes rather than lookup tables written beside the outbox: DynamoDB keeps an index in
step with the row's own write, so there is no instant where a row is there but cannot be
found (a crash between two writes), and it fills the indexes from the rows already there when
they are added to an older outbox (``DynamoDBStore.create_tables``). KEYS_ONLY, the indexes
are written once per row (at enqueue, and when the message id is set), not on every lease.
The limit: index reads are eventually consistent, typically by well under a second. A row is
in ``by_key`` from its enqueue, long before any message carrying its key exists; a provider's
notification that arrives within that lag after ``mark_outbox`` is answered unmatched, as it
would be on SQLite when it arrives before the mark.

Tables (made by ``create_tables``):

- ``engagement_events``: idempotency_key / ``event#event_id``, the event's fields as
  attributes (SQLite's columns). A message's events share a partition. Each event is written
  with a PutItem conditioned on ``attribute_not_exists`` (DynamoDB checks and writes as one
  step), so the first of each (idempotency_key, event, event_id) wins and a replay, even one
  racing it on another server, is reported not new, as SQLite's ``INSERT OR IGNORE``.
- ``suppressions``: ``address`` (``address_key``: emails case-folded, phones as digits) with
  ``reason`` and ``at``; a conditional PutItem per address keeps the first reason.
  ``suppressed_addresses`` is a BatchGetItem (100 keys a request). An address that normalises
  to nothing (no ``@``, no digit) cannot be a DynamoDB key and is never suppressed.
"""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor

from stores.base import ENGAGEMENT_COLUMNS, address_key, iso
from stores.dynamodb.codec import THREADS, from_item, sort_key, table_key, to_item, typed_value

_MESSAGE_COLUMNS = (
    "program", "customer_id", "subject_id", "channel", "step", "idempotency_key", "address",
    "message_id", "status", "shadow",
)  # fmt: skip


class DynamoDBFeedback:
    """The ``delivery feedback`` role of DynamoDBStore (stores/dynamodb/store.py)."""

    def find_message(self, key: str | None = None, message_id: str | None = None) -> dict | None:
        """By idempotency key if given, else by message id: an index Query, then the row."""
        if key is None and message_id is None:
            return None
        index, column, value = (
            ("by_key", "idempotency_key", key) if key is not None
            else ("by_message_id", "message_id", message_id)
        )  # fmt: skip
        if not value:  # an empty text is no key of an index (and no row's)
            return None
        found = self.read(
            "query", "outbox", ["customer_id", "sk"], {"value": value}, IndexName=index,
            KeyConditionExpression=f"#{column} = :value", ConsistentRead=False,
        )  # fmt: skip
        for ref in found:  # one, as keys and message ids are unique
            request = {
                "TableName": self.name("outbox"), "Key": to_item(ref), "ConsistentRead": True,
                "ProjectionExpression": ", ".join(f"#{c}" for c in _MESSAGE_COLUMNS),
                "ExpressionAttributeNames": {f"#{c}": c for c in _MESSAGE_COLUMNS},
            }  # fmt: skip
            item = self.client.get_item(**request).get("Item")
            if item is not None:
                row = from_item(item)
                row.setdefault("step", row["channel"])  # enqueued before journeys
                return {c: typed_value(c, row.get(c)) for c in _MESSAGE_COLUMNS}
        return None

    def record_engagement(self, events: list[dict]) -> list[bool]:
        """Conditional PutItems (8 threads) of each key's first event in ``events``; a key
        repeated within ``events`` is not new after its first (SQLite's input order)."""
        from ceap.context import RunContext

        received = iso(RunContext.utcnow())
        rows = []
        for e in events:
            row = {c: e.get(c) for c in ENGAGEMENT_COLUMNS}
            row |= {"event_id": e.get("event_id") or "", "received_at": received}
            rows.append(row | {"sk": sort_key(row["event"], row["event_id"])})
        first: dict[tuple, int] = {}
        for i, row in enumerate(rows):
            first.setdefault(table_key(row, "engagement_events"), i)
        new = [False] * len(rows)
        added = self._put_each("engagement_events", rows, first)
        for i, was_new in zip(first.values(), added, strict=True):
            new[i] = was_new
        return new

    def suppress_addresses(self, entries: list[tuple[str, str, str]]) -> int:
        """Conditional PutItems of each address's first entry; how many were not there yet."""
        rows = [
            {"address": key, "reason": reason, "at": at}
            for a, reason, at in entries
            if a and (key := address_key(a))
        ]
        first: dict[tuple, int] = {}
        for i, row in enumerate(rows):
            first.setdefault(table_key(row, "suppressions"), i)
        return sum(self._put_each("suppressions", rows, first))

    def suppressed_addresses(self, addresses: list[str]) -> dict[str, str]:
        """Every given address (as given) whose normalised form is on the list, with its reason."""
        given: dict[str, list[str]] = {}
        for a in addresses:
            if a and (key := address_key(a)):
                given.setdefault(key, []).append(a)
        found = self.get_many("suppressions", [{"address": k} for k in given])
        return {a: item["reason"] for (k,), item in found.items() for a in given[k]}

    def _put_each(self, table: str, rows: list[dict], first: dict[tuple, int]) -> list[bool]:
        """``put_new`` of the rows at the indexes in ``first`` (distinct keys), in its order."""
        if not first:
            return []
        with ThreadPoolExecutor(min(THREADS, len(first))) as pool:
            return list(pool.map(lambda i: self.put_new(table, rows[i]), first.values()))
