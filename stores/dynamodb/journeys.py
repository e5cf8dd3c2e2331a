"""Journeys on DynamoDB (DESIGN §9): ``settle_waiting`` of DynamoDBStore, and the facts a
lease attaches for the steps' ``when:`` conditions, with SqliteOutbox's semantics
(stores/sqlite/outbox.py). A mixin over the store's request helpers.

Steps. An outbox item is one candidate's step: sort key ``program#subject_id#step`` (the step
is the channel type unless named, so a program of one step per channel keeps the keys it had
before journeys, ``program#subject_id#channel``), and a ``step`` attribute; an item written
before journeys has none and reads as its channel's step.

Waiting rows. An ``after:`` step is enqueued ``waiting`` without the ``due`` attribute: it is
in no shard of the sparse ``due`` index, so no dispatcher's scan sees it. Settling it is one
UpdateItem conditioned on ``status = waiting`` (DynamoDB checks and writes as one step): to
``pending`` with its ``send_after`` and its ``due`` shard, leasable from then on, or to
``suppressed`` with the reason. A row no longer waiting (settled by another dispatcher, a
replay) fails the condition and is left alone, as is a settlement naming no row.

Lease facts (``LeaseRequest.conditions``), read per candidate of the leased rows (program,
customer, subject; 8 threads), each strongly consistent, after the claims as the guards are:

- ``responded``: one Query of the customer's ``responses``, sort keys ``program#subject_id#``;
- ``engaged``: one Query of the customer's outbox, sort keys ``program#subject_id#`` (the
  candidate's rows, one per step), then one Query of ``engagement_events`` (keyed by
  idempotency key) for each row handed to a provider (sent, shadowed, failed or attempted):
  a row never handed over has no message, so no event. The events kept are ``opened`` and
  ``clicked``, as (step, event).

So a candidate costs 2 requests plus one per step it was sent, however many of its rows are
leased in the round. Both Queries filter on ``subject_id``: a subject id may contain ``#``.
"""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor

from stores.base import iso
from stores.dynamodb.codec import THREADS, due_shard, sort_key

_HANDED_OVER = ("sent", "shadowed", "failed")
_OF_CANDIDATE = {
    "KeyConditionExpression": "#customer_id = :customer_id AND begins_with(#sk, :prefix)",
    "FilterExpression": "#subject_id = :subject_id", "ConsistentRead": True,
}  # fmt: skip


class DynamoDBJourneys:
    """The journey part of the ``outbox queue`` role of DynamoDBStore (stores/dynamodb/store.py)."""

    def settle_waiting(self, settlements: list[dict]) -> int:
        """CandidateStore.settle_waiting: one conditional UpdateItem per settlement (8
        threads; in input order when one names a row twice); returns the rows moved."""
        if not settlements:
            return 0
        from ceap.context import RunContext

        clock = iso(RunContext.utcnow())

        def one(s: dict) -> bool:
            key = {"customer_id": s["customer_id"],
                   "sk": sort_key(s["program"], s["subject_id"], s["step"])}  # fmt: skip
            fields = {"status": s["status"], "reason": s.get("reason"), "updated_at": clock}
            if s.get("send_after"):  # else kept (SQLite's coalesce)
                fields["send_after"] = s["send_after"]
            if s["status"] == "pending":  # into the due index: leasable
                fields["due"] = due_shard(s["customer_id"])
            update = self._update(
                "outbox", key, fields, "#status = :waiting", {"waiting": "waiting"}
            )
            try:
                self.client.update_item(**update)
            except self.errors.ConditionalCheckFailedException:
                return False
            return True

        named = {(s["customer_id"], s["program"], s["subject_id"], s["step"]) for s in settlements}
        if len(named) < len(settlements) or len(settlements) < 2:
            return sum(map(one, settlements))
        with ThreadPoolExecutor(min(THREADS, len(settlements))) as pool:
            return sum(pool.map(one, settlements))

    def ended_parents(self, program: str, parent: str, child: str) -> list[dict]:
        """CandidateStore.ended_parents: waiting rows are in no index, so one filtered Scan
        of the outbox (a dispatcher runs it once, when it starts), then the parents' items
        by key (BatchGetItem, consistent)."""
        waiting = self.read(
            "scan", "outbox", ["customer_id", "subject_id", "step", "channel"],
            {"waiting": "waiting", "program": program, "child": child},
            FilterExpression="#status = :waiting AND #program = :program AND "
                             "(#step = :child OR (attribute_not_exists(#step) AND #channel = :child))",
        )  # fmt: skip
        keys = [{"customer_id": w["customer_id"], "sk": sort_key(program, w["subject_id"], parent)}
                for w in waiting]  # fmt: skip
        found = self.get_many("outbox", keys) if keys else {}
        out = []
        for item in found.values():
            if item.get("status") in ("sent", "shadowed", "suppressed", "failed"):
                out.append({"customer_id": item["customer_id"], "subject_id": item["subject_id"],
                            "status": item["status"],
                            "at": item.get("sent_at") or item.get("updated_at")})  # fmt: skip
        return out

    def attach_journey_facts(self, rows: list[dict]) -> None:
        """Adds ``responded`` and ``engaged`` to each leased row (see the module docstring)."""
        keys = sorted({(r["program"], r["customer_id"], r["subject_id"]) for r in rows})
        if not keys:
            return
        with ThreadPoolExecutor(min(THREADS, len(keys))) as pool:
            facts = dict(zip(keys, pool.map(lambda k: self._history(*k), keys), strict=True))
        for r in rows:
            r["responded"], r["engaged"] = facts[(r["program"], r["customer_id"], r["subject_id"])]

    def _history(
        self, program: str, customer_id: str, subject_id: str
    ) -> tuple[bool, list[tuple[str, str]]]:
        """Whether the customer responded to the candidate, and the (step, event) opens and
        clicks of its messages."""
        values = {"customer_id": customer_id, "subject_id": subject_id,
                  "prefix": sort_key(program, subject_id, "")}  # fmt: skip
        responded = bool(self.read("query", "responses", ["sk"], values, **_OF_CANDIDATE))
        steps = self.read(
            "query", "outbox", ["idempotency_key", "status", "attempts"], values, **_OF_CANDIDATE
        )
        engaged: list[tuple[str, str]] = []
        for row in steps:
            if row["status"] in _HANDED_OVER or row.get("attempts"):
                engaged += self._opens_and_clicks(row["idempotency_key"])
        return responded, engaged

    def _opens_and_clicks(self, idempotency_key: str) -> list[tuple[str, str]]:
        """(step, event) of a message's ``opened`` and ``clicked`` events: one Query."""
        found = self.read(
            "query", "engagement_events", ["channel", "step", "event"],
            {"key": idempotency_key, "opened": "opened", "clicked": "clicked"},
            KeyConditionExpression="#idempotency_key = :key",
            FilterExpression="#event IN (:opened, :clicked)", ConsistentRead=True,
        )  # fmt: skip
        return [(e.get("step") or e["channel"], e["event"]) for e in found]
