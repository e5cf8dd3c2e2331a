"""The dispatcher's outbox on DynamoDB: ``lease_outbox``, ``mark_outbox``, ``release_outbox``
and ``outbox_status`` of DynamoDBStore, with SqliteStore's semantics where DynamoDB allows.

How a lease is taken. Due rows are found on the sparse GSI ``due`` (pending rows only, not
``waiting`` journey steps; 16 shards, sort key send_after): each shard is Queried for
``send_after <= now`` with the lease, retry time, program and channel as a filter, and the
oldest rows of all shards are claimed one by one (8 threads) with an UpdateItem conditioned
on the row, read at the claim, still being pending, due, with its lease free or expired and
its retry time reached. The claim returns the row (ALL_NEW), so the GSI's eventual
consistency only costs a wasted claim.

What is atomic, and what is not (DynamoDB has no transaction over a query, so the lease is
not the single step SqliteStore's ``BEGIN IMMEDIATE`` makes it):

- atomic, per row: the claim. A failed condition means another dispatcher holds the row (or
  it was sent meanwhile); it is skipped. Two dispatchers never hold the same row. Every later
  write (screen decisions, ``mark``, ``release``) is conditioned on ``lease_owner = owner``
  and the expected status, so only the holder records an outcome, and a dispatcher whose
  lease ran out and was taken over changes nothing.
- read after the claims, each read strongly consistent, not one snapshot: the guards. The
  candidate (BatchGetItem), the opt-outs that can apply to the row (BatchGetItem of the four
  ``program#channel`` keys, ``*`` included) and, when a cap applies, the customer's contacts
  (one Query of the customer's outbox partition). An opt-out written after they are read is
  not seen by this round, as with SQLite once its transaction has committed.
- best effort: the frequency cap between two dispatchers leasing rows of one customer at the
  same moment. Each claims before it counts, and every read is consistent, so at least one
  of the two sees the other's lease ("leased by others, not shadow" in ``recent``) and the
  cap is never exceeded; but when both see each other, both count the other's row and both
  may suppress, so the customer can get fewer contacts than the cap allows (SQLite's single
  writer lets the first one through). Rows of one customer in one batch are counted by the
  dispatcher itself.
- with ``LeaseRequest.conditions``, the facts of journey conditions, read after the claims
  too (``responded``, ``engaged``: stores/dynamodb/journeys.py).

``mark`` and ``release`` name rows by idempotency key, while the table is keyed by customer
and ``program#subject_id#step``: the keys of rows this store leased are remembered; a key
it did not lease (another process marking with the same owner) is found with one Scan.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable, Iterable
from concurrent.futures import ThreadPoolExecutor
from typing import TYPE_CHECKING, Any

import pyarrow as pa

from stores.dynamodb.codec import (
    DUE_SHARDS,
    THREADS,
    due_shard,
    from_item,
    sort_key,
    to_item,
    typed_value,
    with_names,
)
from stores.leasing import LeasedRow, LeaseRequest

if TYPE_CHECKING:
    from stores.dynamodb.store import DynamoDBStore

# The fields of a leased row, as SqliteStore returns them (plus the candidate's and guards').
_ROW = [
    "program", "customer_id", "subject_id", "channel", "step", "send_after", "attempts",
    "idempotency_key", "template", "shadow",
]  # fmt: skip
_CANDIDATE = {"status": "cand_status", "expires_at": "expires_at", "action": "action",
              "subject_type": "subject_type", "context": "context"}  # fmt: skip
# Pending, due at ``now``, lease free or expired at ``clock``, retry time reached.
_FREE = (
    "#status = :pending AND (attribute_not_exists(#lease_until) OR #lease_until < :clock) "
    "AND (attribute_not_exists(#next_attempt_at) OR #next_attempt_at <= :clock)"
)
_DUE = f"attribute_exists(#sk) AND #send_after <= :now AND {_FREE}"
_HELD = "#lease_owner = :owner AND #status = :from_status"
_UNLEASED = {"lease_owner": None, "lease_until": None}


class DynamoDBOutbox:
    """Args:
    store: the DynamoDBStore whose client and table names are used.
    """

    def __init__(self, store: DynamoDBStore) -> None:
        self._store = store
        self.client = store.client
        self.errors = store.errors
        self._table = store.name("outbox")
        # idempotency key -> table key of the rows this store leased and has not settled
        self._keys: dict[str, dict[str, str]] = {}

    # -- lease -------------------------------------------------------------------------------
    def lease(self, request: LeaseRequest) -> list[LeasedRow]:
        """CandidateStore.lease_outbox; see the module docstring for what is atomic."""
        owner, now, clock, lease_until, limit, programs, channel, cap_since, screen = request[:9]
        if not programs or limit <= 0:
            return []
        values = {"pending": "pending", "now": now, "clock": clock, "owner": owner,
                  "until": lease_until}  # fmt: skip
        due = self._due(values, programs, channel, limit)
        rows: list[dict] = []
        try:
            with ThreadPoolExecutor(THREADS) as pool:
                while due and len(rows) < limit:  # claims lost to others: the next oldest
                    batch, due = due[: limit - len(rows)], due[limit - len(rows) :]
                    rows += [r for r in pool.map(lambda k: self._claim(k, values), batch) if r]
            rows.sort(key=lambda r: (r["send_after"], r["rowid"]))
            self._attach_guards(rows, owner, clock, cap_since or {})
            if request.conditions and rows:
                self._store.attach_journey_facts(rows)
            decisions = screen(rows) if screen is not None and rows else []
        except BaseException:
            self.release(owner, [r["idempotency_key"] for r in rows])
            raise
        self._each(lambda d: self._decide(*d, owner=owner, clock=clock), decisions, parallel=True)
        dropped = {d[0] for d in decisions}
        return [r for r in rows if r["rowid"] not in dropped]

    def _due(
        self, values: dict, programs: list[str], channel: str | None, limit: int
    ) -> list[dict[str, str]]:
        """Keys of up to ``limit`` due, free rows per shard, oldest first over all shards
        (read from the GSI: eventually consistent, the claim re-checks)."""
        where, values = [_FREE], dict(values)
        if len(programs) <= 99:  # DynamoDB's IN takes at most 100 operands
            values |= {f"p{i}": p for i, p in enumerate(programs)}
            where.append(f"#program IN ({', '.join(f':p{i}' for i in range(len(programs)))})")
        if channel is not None:
            values["channel"] = channel
            where.append("#channel = :channel")
        wanted = set(programs)

        def shard(n: int) -> list[dict]:
            request = with_names({
                "TableName": self._table, "IndexName": "due",
                "KeyConditionExpression": "#due = :shard AND #send_after <= :now",
                "FilterExpression": " AND ".join(where),
                "ProjectionExpression": "#customer_id, #sk, #send_after, #program",
            }, values | {"shard": f"{n:02d}"})  # fmt: skip
            found: list[dict] = []
            while len(found) < limit:
                page = self.client.query(**request)
                found += [i for i in map(from_item, page["Items"]) if i["program"] in wanted]
                if "LastEvaluatedKey" not in page:
                    break
                request["ExclusiveStartKey"] = page["LastEvaluatedKey"]
            return found[:limit]

        with ThreadPoolExecutor(THREADS) as pool:
            found = [i for part in pool.map(shard, range(DUE_SHARDS)) for i in part]
        found.sort(key=lambda i: (i["send_after"], i["customer_id"], i["sk"]))
        return [{"customer_id": i["customer_id"], "sk": i["sk"]} for i in found]

    def _claim(self, key: dict[str, str], values: dict) -> dict | None:
        """Leases one row if it is still due and free: the atomic step. None: someone else's."""
        request = with_names({
            "TableName": self._table, "Key": to_item(key), "ReturnValues": "ALL_NEW",
            "UpdateExpression": "SET #lease_owner = :owner, #lease_until = :until, "
                                "#updated_at = :clock",
            "ConditionExpression": _DUE,
        }, values)  # fmt: skip
        try:
            item = from_item(self.client.update_item(**request)["Attributes"])
        except self.errors.ConditionalCheckFailedException:
            return None
        self._keys[item["idempotency_key"]] = key
        item.setdefault("step", item["channel"])  # enqueued before journeys: the channel's step
        return {"rowid": item["idempotency_key"]} | {c: typed_value(c, item.get(c)) for c in _ROW}

    def _attach_guards(
        self, rows: list[dict], owner: str, clock: str, cap_since: dict[str, str]
    ) -> None:
        """Adds the candidate's fields, ``opt_outs`` and ``recent`` to each row (SqliteStore's)."""
        if not rows:
            return
        get = self._store.get_many
        wanted = {(r["customer_id"], sort_key(r["program"], r["subject_id"])) for r in rows}
        candidates = get("candidates", [{"customer_id": c, "sk": sk} for c, sk in wanted])
        keys = {
            (r["customer_id"], sort_key(p, ch))
            for r in rows for p in (r["program"], "*") for ch in (r["channel"], "*")
        }  # fmt: skip
        opt_outs: dict[str, list[tuple[str, str]]] = {}
        found = get("opt_outs", [{"customer_id": c, "sk": sk} for c, sk in sorted(keys)])
        for item in found.values():
            opt_outs.setdefault(item["customer_id"], []).append((item["program"], item["channel"]))
        capped = sorted({r["customer_id"] for r in rows if r["channel"] in cap_since})
        with ThreadPoolExecutor(THREADS) as pool:
            recent = pool.map(lambda c: self._recent(c, owner, clock, cap_since), capped)
            counts = dict(zip(capped, recent, strict=True))
        for r in rows:
            cand = candidates.get((r["customer_id"], sort_key(r["program"], r["subject_id"])), {})
            r.update({name: cand.get(field) for field, name in _CANDIDATE.items()})
            r["opt_outs"] = sorted(opt_outs.get(r["customer_id"], []))
            sent, in_flight = counts.get(r["customer_id"], ({}, Counter()))
            r["sent_times"] = sorted(sent.get((r["channel"], False), []))
            r["in_flight"] = in_flight[(r["channel"], False)]
            r["recent"] = len(r["sent_times"]) + r["in_flight"]
            r["shadow_times"] = sorted(sent.get((r["channel"], True), []))
            r["shadow_in_flight"] = in_flight[(r["channel"], True)]

    def _recent(
        self, customer_id: str, owner: str, clock: str, cap_since: dict[str, str]
    ) -> tuple[dict[tuple[str, bool], list[str]], Counter]:
        """Per (channel, shadow): the times of the customer's rows sent (or shadowed: their
        ``updated_at``) since ``cap_since[channel]``, and how many are leased by another
        dispatcher (in flight). Shadow rows count toward shadow caps only. One consistent
        Query."""
        values = {"customer_id": customer_id}
        request = {"TableName": self._table, "ConsistentRead": True,
                   "KeyConditionExpression": "#customer_id = :customer_id",
                   "ProjectionExpression": "#channel, #status, #sent_at, #updated_at, "
                                           "#lease_owner, #lease_until, #shadow"}  # fmt: skip
        request = with_names(request, values)
        sent: dict[tuple[str, bool], list[str]] = {}
        in_flight: Counter = Counter()
        while True:
            page = self.client.query(**request)
            for r in map(from_item, page["Items"]):
                since = cap_since.get(r["channel"])
                if since is None:
                    continue
                at = r.get("sent_at") or r.get("updated_at") or ""
                if r["status"] in ("sent", "shadowed") and at >= since:
                    sent.setdefault((r["channel"], r["status"] == "shadowed"), []).append(at)
                in_flight[(r["channel"], bool(r.get("shadow")))] += (
                    r["status"] == "pending" and r.get("lease_owner") not in (None, owner)
                    and r.get("lease_until", "") >= clock
                )  # fmt: skip
            if "LastEvaluatedKey" not in page:
                return sent, in_flight
            request["ExclusiveStartKey"] = page["LastEvaluatedKey"]

    def _decide(self, rowid: str, kind: str, value: str, owner: str, clock: str) -> bool:
        """Applies a screen decision to a row still leased by ``owner`` and frees it."""
        if kind == "suppress":
            fields = {"status": "suppressed", "reason": value, "due": None}
        else:  # defer: a later send_after (the due index follows), still pending
            fields = {"send_after": value}
        done = self._update(self._keys[rowid], fields | _UNLEASED, owner, "pending", clock)
        self._keys.pop(rowid, None)
        return done

    # -- outcomes ----------------------------------------------------------------------------
    def mark(self, owner: str, updates: list[dict], clock: str) -> int:
        """CandidateStore.mark_outbox: one conditional UpdateItem per row; an ``address`` or
        ``message_id`` given is kept (the latter indexed ``by_message_id``: feedback.py)."""
        keys = self._resolve([u["key"] for u in updates])

        def one(u: dict) -> bool:
            key = keys.get(u["key"])
            if key is None:
                return False
            keep = bool(u.get("keep_lease", False))
            fields = {
                "status": u["status"], "reason": u.get("reason"), "sent_at": u.get("sent_at"),
                "next_attempt_at": u.get("next_attempt_at"),
                "due": due_shard(key["customer_id"]) if u["status"] == "pending" else None,
            } | ({} if keep else _UNLEASED)  # fmt: skip
            # kept unless given (SQLite's coalesce); an empty message id is no index key
            fields |= {k: u[k] for k in ("address", "message_id") if u.get(k)}
            attempted = 1 if u.get("attempted", True) else 0
            done = self._update(
                key, fields, owner, u.get("from_status", "pending"), clock, attempted
            )
            if done and not keep:
                self._keys.pop(u["key"], None)
            return done

        # the same key twice: in input order, as SQLite's executemany
        unique = len({u["key"] for u in updates}) == len(updates)
        return sum(self._each(one, updates, parallel=unique))

    def leases(self, owner_prefix: str, clock: str) -> dict[str, list[str]]:
        """CandidateStore.outbox_leases: the pending rows (all in the ``due`` index) leased
        by owners starting with ``owner_prefix``, live at ``clock``; one Query per shard."""

        def shard(n: int) -> list[dict]:
            request = with_names({
                "TableName": self._table, "IndexName": "due",
                "KeyConditionExpression": "#due = :shard",
                "FilterExpression": "begins_with(#lease_owner, :prefix) AND #lease_until >= :clock",
                "ProjectionExpression": "#customer_id, #sk, #lease_owner, #idempotency_key",
            }, {"shard": f"{n:02d}", "prefix": owner_prefix, "clock": clock})  # fmt: skip
            found: list[dict] = []
            while True:
                page = self.client.query(**request)
                found += map(from_item, page["Items"])
                if "LastEvaluatedKey" not in page:
                    return found
                request["ExclusiveStartKey"] = page["LastEvaluatedKey"]

        held: dict[str, list[str]] = {}
        with ThreadPoolExecutor(THREADS) as pool:
            for item in (i for part in pool.map(shard, range(DUE_SHARDS)) for i in part):
                self._keys[item["idempotency_key"]] = {
                    "customer_id": item["customer_id"],
                    "sk": item["sk"],
                }
                held.setdefault(item["lease_owner"], []).append(item["idempotency_key"])
        return held

    def release(self, owner: str, keys: list[str]) -> int:
        """CandidateStore.release_outbox: frees ``owner``'s leases on rows still pending."""
        found = self._resolve(keys)

        def one(k: str) -> bool:
            done = k in found and self._update(found[k], dict(_UNLEASED), owner, "pending")
            if done:
                self._keys.pop(k, None)
            return done

        return sum(self._each(one, list(dict.fromkeys(keys)), parallel=True))

    def status(self, program: str | None = None, channel: str | None = None) -> pa.Table:
        """CandidateStore.outbox_status: (program, channel, status, rows), sorted."""
        values = {"program": program, "channel": channel}
        where = " AND ".join(f"#{k} = :{k}" for k, v in values.items() if v is not None)
        found = self._store.read(
            "scan", "outbox", ["program", "channel", "status"], values,
            **({"FilterExpression": where} if where else {}),
        )  # fmt: skip
        counts = sorted(Counter((r["program"], r["channel"], r["status"]) for r in found).items())
        names = ["program", "channel", "status"]
        columns = {n: pa.array([k[i] for k, _ in counts], pa.string()) for i, n in enumerate(names)}
        return pa.table(columns | {"rows": pa.array([n for _, n in counts], pa.int64())})

    # -- helpers -----------------------------------------------------------------------------
    def _update(
        self,
        key: dict[str, str],
        fields: dict[str, Any],
        owner: str,
        from_status: str,
        clock: str | None = None,
        attempted: int = 0,
    ) -> bool:
        """SET the fields (REMOVE the null ones) of a row leased by ``owner`` with status
        ``from_status``; False when it is not (lease lost, or already settled)."""
        if clock is not None:
            fields = fields | {"updated_at": clock}
        sets = [f"#{k} = :{k}" for k, v in fields.items() if v is not None]
        if attempted:
            sets.append("#attempts = if_not_exists(#attempts, :zero) + :attempted")
        removes = [f"#{k}" for k, v in fields.items() if v is None]
        expr = " ".join(
            f"{verb} {', '.join(parts)}" for verb, parts in (("SET", sets), ("REMOVE", removes))
            if parts
        )  # fmt: skip
        values = fields | {"owner": owner, "from_status": from_status, "zero": 0,
                           "attempted": attempted}  # fmt: skip
        request = {"TableName": self._table, "Key": to_item(key), "UpdateExpression": expr,
                   "ConditionExpression": _HELD}  # fmt: skip
        try:
            self.client.update_item(**with_names(request, values))
        except self.errors.ConditionalCheckFailedException:
            return False
        return True

    def _resolve(self, idempotency_keys: list[str]) -> dict[str, dict[str, str]]:
        """Table keys of rows named by idempotency key: remembered from the lease, else one
        projected Scan (a row leased by another store instance: the slow path)."""
        found = {k: self._keys[k] for k in idempotency_keys if k in self._keys}
        missing = set(idempotency_keys) - set(found)
        if missing:
            columns = ["customer_id", "sk", "idempotency_key"]
            for item in self._store.read("scan", "outbox", columns, {}):
                if item.get("idempotency_key") in missing:
                    found[item["idempotency_key"]] = {
                        "customer_id": item["customer_id"],
                        "sk": item["sk"],
                    }
        return found

    @staticmethod
    def _each(fn: Callable[[Any], bool], items: Iterable, parallel: bool) -> list[bool]:
        items = list(items)
        if not parallel or len(items) < 2:
            return [fn(i) for i in items]
        with ThreadPoolExecutor(THREADS) as pool:
            return list(pool.map(fn, items))
