"""What DynamoDB keeps per customer, read and written one customer partition at a time:
the filters' lookups, the Serving API's reads, opt-outs and responses. A mixin of
DynamoDBStore (stores/dynamodb/store.py), over its request helpers."""

from __future__ import annotations

import json
import math
from contextlib import suppress
from datetime import datetime
from typing import Any

import pyarrow as pa

from stores.base import iso, response_id
from stores.dynamodb.codec import SERVING_COLUMNS, sort_key, to_arrow, to_item, typed_value


class DynamoDBCustomers:
    """The ``filter lookups``, ``serving reads`` and ``registries`` roles of DynamoDBStore."""

    # -- lookups ---------------------------------------------------------------------------
    def live_keys(
        self, program: str, now: datetime, customers: list[str] | None = None
    ) -> pa.Table:
        where = "#program = :program AND #status = :live AND #expires_at > :now"
        values = {"program": program, "live": "live", "now": iso(now)}
        columns = ["customer_id", "subject_id", "deliver_after"]
        found = self.read("scan", "candidates", columns, values, FilterExpression=where)
        return _only(to_arrow(found, columns), customers)

    def acted_keys(self, program: str | None, customers: list[str] | None = None) -> pa.Table:
        columns = ["program", "customer_id", "subject_id"]
        where = {"FilterExpression": "#program = :program"} if program is not None else {}
        found = self.read("scan", "responses", columns, {"program": program}, **where)
        distinct = dict.fromkeys(tuple(r[c] for c in columns) for r in found)
        return _only(
            to_arrow([dict(zip(columns, k, strict=True)) for k in distinct], columns), customers
        )

    def contacts(self, since: datetime, customers: list[str] | None = None) -> pa.Table:
        columns = ["program", "customer_id", "subject_id", "channel", "sent_at"]
        where = "#status = :sent AND #sent_at >= :since"
        values = {"sent": "sent", "since": iso(since)}
        found = self.read("scan", "outbox", columns, values, FilterExpression=where)
        for r in found:
            r["contacted_at"] = r.pop("sent_at")
        return _only(to_arrow(found, [*columns[:4], "contacted_at"]), customers)

    def opt_outs(self, customers: list[str] | None = None) -> pa.Table:
        found = self.read("scan", "opt_outs", ["customer_id", "program", "channel"], {})
        for r in found:
            r.update({k: None for k in ("program", "channel") if r.get(k) == "*"})
        return _only(to_arrow(found, ["customer_id", "program", "channel"]), customers)

    def cached_scores(self, program: str) -> pa.Table:
        columns = ["customer_id", "subject_id", "score", "model_id"]
        where = "#program = :program AND attribute_exists(#score)"
        return to_arrow(
            self.read("scan", "candidates", columns, {"program": program}, FilterExpression=where),
            columns,
        )

    def customer_candidates(
        self,
        customer_id: str,
        program: str | None = None,
        limit: int = 100,
        consistent: bool = False,
    ) -> list[dict]:
        """A customer's live candidates, best score first, for the Serving API: one Query on
        the partition key, sorted here (a customer has few rows). ``program`` narrows with
        ``begins_with`` on the sort key; ``consistent`` sees a response just recorded.

        Returns dicts of customer_id and SERVING_COLUMNS (docs/architecture.md, "Serving API" plus status and
        deliver_after), score a float, context the stored JSON text, as SqliteStore's rows.
        The caller still checks expires_at: TTL deletion lags.
        """
        key = "#customer_id = :customer_id" + (" AND begins_with(#sk, :prefix)" if program else "")
        values = {"customer_id": customer_id, "prefix": sort_key(program or "", ""), "live": "live"}
        request = {
            "KeyConditionExpression": key,
            "FilterExpression": "#status = :live",
            "ConsistentRead": consistent or self.consistent,
        }
        found = self.read("query", "candidates", SERVING_COLUMNS, values, **request)
        found.sort(key=lambda r: -r["score"] if r.get("score") is not None else math.inf)
        return [
            {"customer_id": customer_id} | {c: typed_value(c, r.get(c)) for c in SERVING_COLUMNS}
            for r in found[:limit]
        ]

    # -- registries ------------------------------------------------------------------------
    def add_opt_out(self, customer_id: str, program: str | None, channel: str | None) -> None:
        from ceap.context import RunContext

        record = {"customer_id": customer_id, "program": program or "*", "channel": channel or "*"}
        record.update(
            sk=sort_key(record["program"], record["channel"]), created_at=iso(RunContext.utcnow())
        )
        put = self._put("opt_outs", record, "attribute_not_exists(#sk)", {})
        with suppress(self.errors.ConditionalCheckFailedException):  # INSERT OR IGNORE
            self.client.put_item(**put)

    def remove_opt_outs(self, customer_id: str) -> int:
        where = {"KeyConditionExpression": "#customer_id = :customer_id", "ConsistentRead": True}
        found = self.read(
            "query", "opt_outs", ["customer_id", "sk"], {"customer_id": customer_id}, **where
        )
        self._write_many("opt_outs", [{"DeleteRequest": {"Key": to_item(k)}} for k in found])
        return len(found)

    def record_response(
        self, program: str, customer_id: str, subject_id: str, response: Any,
        key: str | None = None,
    ) -> bool:  # fmt: skip
        from ceap.context import RunContext

        now = iso(RunContext.utcnow())
        rid = response_id(now, key)
        record = {"program": program, "customer_id": customer_id, "subject_id": subject_id}
        record.update(
            response=json.dumps(response, allow_nan=False), created_at=now, response_id=rid,
            sk=sort_key(program, subject_id, rid),
        )  # fmt: skip
        with suppress(self.errors.ConditionalCheckFailedException):  # a replayed key
            self.client.put_item(
                TableName=self.name("responses"), Item=to_item(record),
                ConditionExpression="attribute_not_exists(sk)",
            )  # fmt: skip
        key = {"customer_id": customer_id, "sk": sort_key(program, subject_id)}
        fields = {"status": "consumed", "updated_at": now}
        update = self._update("candidates", key, fields, "attribute_exists(#sk)", {})
        try:  # the response stays recorded when there is no candidate, as in SQLite
            self.client.update_item(**update)
        except self.errors.ConditionalCheckFailedException:
            return False
        return True

    # -- Serving API reads and writes -------------------------------------------------------
    def expire_candidate(self, program: str, customer_id: str, subject_id: str) -> bool:
        """Marks a live candidate expired (failed a serving re-check); False when it was not
        live (consumed meanwhile, or deleted by the TTL)."""
        from ceap.context import RunContext

        key = {"customer_id": customer_id, "sk": sort_key(program, subject_id)}
        fields = {"status": "expired", "updated_at": iso(RunContext.utcnow())}
        update = self._update(
            "candidates", key, fields, "attribute_exists(#sk) AND #status = :live", {"live": "live"}
        )
        try:
            self.client.update_item(**update)
        except self.errors.ConditionalCheckFailedException:
            return False
        return True

    def has_response(self, program: str, customer_id: str, subject_id: str) -> bool:
        """One Query on the customer's partition, sort keys ``program#subject_id#...``; the
        filter on subject_id guards against subject ids that themselves contain ``#``."""
        values = {
            "customer_id": customer_id, "prefix": sort_key(program, subject_id, ""),
            "subject_id": subject_id,
        }  # fmt: skip
        found = self.read(
            "query", "responses", ["sk"], values,
            KeyConditionExpression="#customer_id = :customer_id AND begins_with(#sk, :prefix)",
            FilterExpression="#subject_id = :subject_id",
        )  # fmt: skip
        return bool(found)

    def is_opted_out(self, customer_id: str, program: str, channel: str | None = None) -> bool:
        """As SqliteStore.is_opted_out: one Query of the customer's (few) opt-outs."""
        found = self.read(
            "query", "opt_outs", ["program", "channel"], {"customer_id": customer_id},
            KeyConditionExpression="#customer_id = :customer_id",
        )  # fmt: skip
        channels = {"*"} if channel is None else {"*", channel}
        return any(r["program"] in ("*", program) and r["channel"] in channels for r in found)


def _only(table: pa.Table, customers: list[str] | None) -> pa.Table:
    """The rows of these customers (all when None): the streaming filters' point lookups.
    A scan then a filter: correct, not yet the per-customer Query it could be."""
    if customers is None:
        return table
    import pyarrow.compute as pc

    return table.filter(
        pc.is_in(table.column("customer_id"), value_set=pa.array(customers, pa.string()))
    )
