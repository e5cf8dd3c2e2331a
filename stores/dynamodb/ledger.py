"""The streaming ledger on DynamoDB: ``record_outcomes``, ``record_stream_batch``,
``seen_events``, ``resume_position`` and ``unaccounted_events`` of DynamoDBStore, with
SqliteLedger's semantics (stores/sqlite/ledger.py). A mixin over the store's request helpers.

Tables (made by ``create_tables``; positions are DynamoDB numbers, so they sort as numbers):

- ``event_outcomes``: ``pk`` = ``program#block`` / ``position``, block = position >> 16, the
  outcome's fields as attributes. One outcome per position: each is written with a PutItem
  conditioned on ``attribute_not_exists`` (DynamoDB checks and writes as one step), so of two
  writers of a position (a replay after a restart, a bundle retried on another worker while
  the first attempt still runs) the first wins and the other changes nothing, as SQLite's
  ``INSERT OR IGNORE``. BatchWriteItem takes no condition: the puts run on 8 threads instead.
  Blocks spread a program over partitions (DynamoDB allows ~1,000 writes a second to one):
  hashed positions (pubsub, kafka, kinesis) land on random blocks; the event log's byte
  offsets move to the next block every 64 KiB.
- ``event_identities``: ``pk`` = ``program#identity`` / ``position``: where an identity was
  read. SQLite keeps an outcome and its identity in one row; here they are two writes, the
  identities first (BatchWriteItem: an item is only its key, so writing it again changes
  nothing), then the outcomes. ``seen_events`` Queries each identity's positions (strongly
  consistent, 8 threads) and reads their outcomes (BatchGetItem, consistent): a position
  counts when its outcome is there, with this identity, at or after ``since``, which is
  SQLite's query. A crash between the two writes leaves identities of positions without an
  outcome, which count for nothing until the position is replayed; the other order would
  lose, for good, the identity of an event whose outcome is kept (nothing replays an
  accounted position). Reading the outcomes costs a request only for identities seen before.
- ``stream_batches``: program / ``start``: the micro-batches the event log emitted, first
  write wins (conditional PutItem). ``resume_position`` and ``unaccounted_events`` read them in
  order (one Query) and count each one's outcomes (a COUNT Query per block its range spans);
  a batch found complete is marked ``done`` (outcomes are never removed, so it stays so), and
  later restarts count only the batches not known to be done.

``unaccounted_events`` counts the events of recorded micro-batches without an outcome; SQLite
subtracts every outcome of the program, which differs only for outcomes outside any recorded
batch (sources that record none: pubsub, kafka, kinesis), where SQLite's figure is negative.
"""

from __future__ import annotations

from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import suppress
from datetime import datetime

import pyarrow as pa

from stores.base import iso
from stores.dynamodb.codec import THREADS, chunks, from_item, sort_key, to_item, with_names

BLOCK_BITS = 16
"""An outcome's partition holds 2**16 positions (``event_outcomes.pk``)."""
_FIELDS = ("outcome", "reason", "customer_id", "subject_id", "identity")


def outcome_partition(program: str, position: int) -> str:
    return sort_key(program, str(position >> BLOCK_BITS))


class DynamoDBLedger:
    """The ``streaming ledger`` role of DynamoDBStore (stores/dynamodb/store.py)."""

    def record_outcomes(self, program: str, outcomes: pa.Table) -> int:
        """Writes each position's outcome unless it has one (of repeated positions in
        ``outcomes``, the first); returns how many positions got their outcome now."""
        from ceap.context import RunContext

        now = iso(RunContext.utcnow())
        present = [c for c in ("position", *_FIELDS) if c in outcomes.column_names]
        first: dict[int, dict] = {}
        for r in outcomes.select(present).to_pylist():
            position = int(r["position"])
            first.setdefault(position, {c: r.get(c) for c in _FIELDS} | {
                "pk": outcome_partition(program, position), "program": program,
                "position": position, "time": now,
            })  # fmt: skip
        if not first:
            return 0
        identities = [
            {"pk": sort_key(program, r["identity"]), "position": p}
            for p, r in first.items()
            if r["identity"] is not None
        ]
        puts = [{"PutRequest": {"Item": to_item(i)}} for i in identities]
        self._write_many("event_identities", puts)  # before any outcome: see above
        with ThreadPoolExecutor(min(THREADS, len(first))) as pool:  # the first outcome wins
            return sum(pool.map(lambda r: self.put_new("event_outcomes", r), first.values()))

    def seen_events(self, program: str, identities: list[str], since: datetime) -> dict[str, int]:
        """identity -> position of events already accounted for since ``since``."""
        wanted = [i for i in dict.fromkeys(identities) if i is not None]
        if not wanted:
            return {}
        with ThreadPoolExecutor(min(THREADS, len(wanted))) as pool:
            read_at = list(pool.map(lambda i: self._read_at(program, i), wanted))
        outcomes = self._outcomes_at(program, {p for positions in read_at for p in positions})
        seen: dict[str, int] = {}
        for identity, positions in zip(wanted, read_at, strict=True):
            for position in positions:  # ascending: the first that counts is the least
                o = outcomes.get(position)
                if o and o.get("identity") == identity and o["time"] >= iso(since):
                    seen[identity] = position
                    break
        return seen

    def _read_at(self, program: str, identity: str) -> list[int]:
        """The positions an identity was read at, in order."""
        found = self.read(
            "query", "event_identities", ["position"], {"pk": sort_key(program, identity)},
            KeyConditionExpression="#pk = :pk", ConsistentRead=True,
        )  # fmt: skip
        return [int(r["position"]) for r in found]

    def _outcomes_at(self, program: str, positions: set[int]) -> dict[int, dict]:
        """position -> (identity, time) of the outcomes recorded at ``positions``."""
        found: dict[int, dict] = {}
        table = self.name("event_outcomes")
        for chunk in chunks(sorted(positions), 100):
            keys = [to_item({"pk": outcome_partition(program, p), "position": p}) for p in chunk]
            request = {table: with_names(
                {"Keys": keys, "ConsistentRead": True,
                 "ProjectionExpression": "#position, #identity, #time"}, {}
            )}  # fmt: skip
            for response in self._drain(self.client.batch_get_item, request, "UnprocessedKeys"):
                for item in map(from_item, response["Responses"].get(table, [])):
                    found[int(item["position"])] = item
        return found

    def record_stream_batch(self, program: str, start: int, end: int, size: int) -> None:
        from ceap.context import RunContext

        row = {"program": program, "start": start, "end": end, "size": size,
               "read_at": iso(RunContext.utcnow())}  # fmt: skip
        with suppress(self.errors.ConditionalCheckFailedException):  # recorded already
            self.client.put_item(
                **self._put("stream_batches", row, "attribute_not_exists(#start)", {})
            )

    def resume_position(self, program: str) -> int:
        """Where a restarted stream reads from: the start of the first batch that was read
        but not fully accounted for (its events are replayed; sinks are idempotent), else
        the end of the last batch."""
        position = 0
        for start, end, missing in self._batches(program):
            if missing > 0:
                return start
            position = end
        return position

    def unaccounted_events(self, program: str) -> int:
        """Events of recorded micro-batches without an outcome yet (a drain waits for zero)."""
        return sum(max(missing, 0) for _, _, missing in self._batches(program))

    def _batches(self, program: str) -> Iterator[tuple[int, int, int]]:
        """(start, end, events without an outcome) of the program's batches, in order; a
        batch found complete is marked ``done`` so that it is not counted again."""
        batches = self.read(
            "query", "stream_batches", ["start", "end", "size", "done"], {"program": program},
            KeyConditionExpression="#program = :program", ConsistentRead=True,
        )  # fmt: skip
        for b in batches:
            start, end, size = int(b["start"]), int(b["end"]), int(b["size"])
            if b.get("done"):
                yield start, end, 0
                continue
            missing = size - self._accounted(program, start, end)
            if missing <= 0:
                key = {"program": program, "start": start}
                self.client.update_item(
                    **self._update(
                        "stream_batches", key, {"done": 1}, "attribute_exists(#start)", {}
                    )
                )
            yield start, end, missing

    def _accounted(self, program: str, start: int, end: int) -> int:
        """Outcomes recorded at positions [start, end): a COUNT Query per block it spans."""
        total = 0
        if end <= start:
            return total
        for block in range(start >> BLOCK_BITS, ((end - 1) >> BLOCK_BITS) + 1):
            request = with_names(
                {"TableName": self.name("event_outcomes"), "Select": "COUNT",
                 "ConsistentRead": True,
                 "KeyConditionExpression": "#pk = :pk AND #position BETWEEN :first AND :last"},
                {"pk": sort_key(program, str(block)), "first": start, "last": end - 1},
            )  # fmt: skip
            for page in self.client.get_paginator("query").paginate(**request):
                total += page["Count"]
        return total
