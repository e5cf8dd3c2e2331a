"""The dispatcher's outbox on SQLite: rows queued by the pipeline, leased atomically by a
dispatcher (claim, guards and their decisions in one transaction), marked and released."""

from __future__ import annotations

import pyarrow as pa

from stores.leasing import LeasedRow, LeaseRequest
from stores.sqlite.schema import (
    OUTBOX_INSERT,
    OUTBOX_KEY,
    UPSERT_OUTBOX,
    bound_rows,
    in_key_order,
)


class SqliteOutbox:
    """The ``outbox queue`` role of SqliteStore (a mixin over its connection)."""

    def enqueue_outbox(self, rows: pa.Table) -> int:
        if "step" not in rows.column_names:  # a row without steps is its channel's step
            rows = rows.append_column("step", rows.column("channel"))
        rows = in_key_order(rows, OUTBOX_KEY)
        bound = bound_rows(rows, [*OUTBOX_INSERT[:-1], "created_at"])  # updated_at: created_at
        with self._transaction():
            before = self._conn.total_changes
            self._conn.executemany(UPSERT_OUTBOX, bound)
            return self._conn.total_changes - before

    def lease_outbox(self, request: LeaseRequest) -> list[LeasedRow]:
        owner, now, clock, lease_until, limit, programs, channel, cap_since, screen = request[:9]
        if not programs:
            return []
        where = (
            "status = 'pending' AND send_after <= ? AND (lease_until IS NULL OR lease_until < ?) "
            "AND (next_attempt_at IS NULL OR next_attempt_at <= ?) "
            f"AND program IN ({', '.join('?' * len(programs))})"
        )
        params: tuple = (now, clock, clock, *programs)
        if channel is not None:
            where, params = where + " AND channel = ?", (*params, channel)
        # BEGIN IMMEDIATE: the claim, the guards' reads and their decisions are one step, so a
        # second dispatcher sees this one's leases when it counts a customer's contacts.
        with self._transaction():
            leased = self._conn.execute(
                "UPDATE outbox SET lease_owner = ?, lease_until = ?, updated_at = ? WHERE rowid IN "
                f"(SELECT rowid FROM outbox WHERE {where} ORDER BY send_after LIMIT ?) "
                "RETURNING rowid",
                (owner, lease_until, clock, *params, limit),
            ).fetchall()
            ids = [r[0] for r in leased]
            rows = self._leased_rows(ids)
            self._attach_guards(rows, owner, clock, cap_since or {})
            if request.conditions:
                self._attach_history(rows)
            decisions = screen(rows) if screen is not None and rows else []
            for rowid, kind, value in decisions:
                if kind == "suppress":
                    sql = (
                        "UPDATE outbox SET status = 'suppressed', reason = ?, updated_at = ?, "
                        "lease_owner = NULL, lease_until = NULL WHERE rowid = ?"
                    )
                else:  # defer: a later send_after, the lease given back
                    sql = (
                        "UPDATE outbox SET send_after = ?, updated_at = ?, lease_owner = NULL, "
                        "lease_until = NULL WHERE rowid = ?"
                    )
                self._conn.execute(sql, (value, clock, rowid))
        dropped = {d[0] for d in decisions}
        return [r for r in rows if r["rowid"] not in dropped]

    def _leased_rows(self, ids: list[int]) -> list[dict]:
        out: list[dict] = []
        for i in range(0, len(ids), 900):
            chunk = ids[i : i + 900]
            cur = self._conn.execute(
                "SELECT o.rowid AS rowid, o.program, o.customer_id, o.subject_id, o.channel, "
                "o.step, o.send_after, o.attempts, o.idempotency_key, o.template, o.shadow, "
                "c.status AS cand_status, c.expires_at, c.action, c.subject_type, c.context "
                "FROM outbox o LEFT JOIN candidates c ON c.program = o.program "
                "AND c.customer_id = o.customer_id AND c.subject_id = o.subject_id "
                f"WHERE o.rowid IN ({', '.join('?' * len(chunk))})",
                chunk,
            )
            names = [d[0] for d in cur.description]
            out.extend(dict(zip(names, row, strict=True)) for row in cur.fetchall())
        out.sort(key=lambda r: (r["send_after"], r["rowid"]))
        return out

    def _attach_guards(
        self, rows: list[dict], owner: str, clock: str, cap_since: dict[str, str]
    ) -> None:
        customers = sorted({r["customer_id"] for r in rows})
        opt_outs: dict[str, list[tuple[str, str]]] = {}
        sent: dict[tuple[str, str, bool], list[str]] = {}  # (customer, channel, shadow)
        in_flight: dict[tuple[str, str, bool], int] = {}
        for i in range(0, len(customers), 900):
            chunk = customers[i : i + 900]
            marks = ", ".join("?" * len(chunk))
            for cust, prog, chan in self._conn.execute(
                f"SELECT customer_id, program, channel FROM opt_outs WHERE customer_id IN ({marks})",
                chunk,
            ):
                opt_outs.setdefault(cust, []).append((prog, chan))
            for chan, since in cap_since.items():
                # A shadow send is recorded when it is decided (updated_at, no sent_at).
                for cust, shadow, at in self._conn.execute(
                    "SELECT customer_id, status = 'shadowed', coalesce(sent_at, updated_at) "
                    f"FROM outbox WHERE channel = ? AND customer_id IN ({marks}) AND status IN "
                    "('sent', 'shadowed') AND coalesce(sent_at, updated_at) >= ?",
                    (chan, *chunk, since),
                ):
                    sent.setdefault((cust, chan, bool(shadow)), []).append(at)
                for cust, shadow, n in self._conn.execute(
                    "SELECT customer_id, shadow != 0, count(*) FROM outbox WHERE channel = ? "
                    f"AND customer_id IN ({marks}) AND status = 'pending' AND lease_owner IS NOT "
                    "NULL AND lease_owner != ? AND lease_until >= ? GROUP BY 1, 2",
                    (chan, *chunk, owner, clock),
                ):
                    in_flight[(cust, chan, bool(shadow))] = n
        for r in rows:
            live, shadow = (
                (r["customer_id"], r["channel"], False),
                (r["customer_id"], r["channel"], True),
            )
            r["opt_outs"] = opt_outs.get(r["customer_id"], [])
            r["sent_times"] = sorted(sent.get(live, []))
            r["in_flight"] = in_flight.get(live, 0)
            r["recent"] = len(r["sent_times"]) + r["in_flight"]
            r["shadow_times"] = sorted(sent.get(shadow, []))
            r["shadow_in_flight"] = in_flight.get(shadow, 0)

    def _attach_history(self, rows: list[dict]) -> None:
        """What journey conditions read: whether the customer responded to the candidate,
        and the (step, event) engagement events of its messages."""
        keys = sorted({(r["program"], r["customer_id"], r["subject_id"]) for r in rows})
        responded: set[tuple] = set()
        engaged: dict[tuple, list[tuple[str, str]]] = {}
        for i in range(0, len(keys), 300):
            chunk = keys[i : i + 300]
            where = " OR ".join(
                ["(program = ? AND customer_id = ? AND subject_id = ?)"] * len(chunk)
            )
            flat = [v for key in chunk for v in key]
            responded |= set(self._conn.execute(
                f"SELECT DISTINCT program, customer_id, subject_id FROM responses WHERE {where}",  # noqa: S608
                flat,
            ).fetchall())  # fmt: skip
            for *key, step, event in self._conn.execute(
                "SELECT program, customer_id, subject_id, step, event FROM engagement_events "  # noqa: S608
                f"WHERE ({where}) AND event IN ('opened', 'clicked')",
                flat,
            ):
                engaged.setdefault(tuple(key), []).append((step, event))
        for r in rows:
            key = (r["program"], r["customer_id"], r["subject_id"])
            r["responded"], r["engaged"] = key in responded, engaged.get(key, [])

    def settle_waiting(self, settlements: list[dict]) -> int:
        """Moves ``waiting`` rows on once their parent step is settled: each settlement names
        the row (program, customer_id, subject_id, step) and gives its ``status`` (pending,
        with ``send_after``; or suppressed, with ``reason``). Rows no longer waiting are
        left alone (a replay changes nothing)."""
        if not settlements:
            return 0
        from ceap.context import RunContext
        from stores.base import iso

        clock = iso(RunContext.utcnow())
        with self._transaction():
            before = self._conn.total_changes
            self._conn.executemany(
                "UPDATE outbox SET status = ?, send_after = coalesce(?, send_after), "
                "reason = ?, updated_at = ? WHERE program = ? AND customer_id = ? "
                "AND subject_id = ? AND step = ? AND status = 'waiting'",
                [(s["status"], s.get("send_after"), s.get("reason"), clock, s["program"],
                  s["customer_id"], s["subject_id"], s["step"]) for s in settlements],
            )  # fmt: skip
            return self._conn.total_changes - before

    def ended_parents(self, program: str, parent: str, child: str) -> list[dict]:
        cur = self._conn.execute(
            "SELECT c.customer_id, c.subject_id, p.status, coalesce(p.sent_at, p.updated_at) "
            "FROM outbox c JOIN outbox p ON p.program = c.program AND p.customer_id = "
            "c.customer_id AND p.subject_id = c.subject_id AND p.step = ? WHERE c.status = "
            "'waiting' AND c.program = ? AND c.step = ? AND p.status IN "
            "('sent', 'shadowed', 'suppressed', 'failed')",
            (parent, program, child),
        )
        names = ("customer_id", "subject_id", "status", "at")
        return [dict(zip(names, row, strict=True)) for row in cur.fetchall()]

    def mark_outbox(self, owner: str, updates: list[dict], clock: str) -> int:
        if not updates:
            return 0
        rows = [
            (
                u["status"], u.get("reason"), u.get("sent_at"), u.get("next_attempt_at"),
                1 if u.get("attempted", True) else 0, clock, keep := int(u.get("keep_lease", False)),
                keep, u.get("address"), u.get("message_id"), u["key"], owner,
                u.get("from_status", "pending"),
            )
            for u in updates
        ]  # fmt: skip
        with self._transaction():
            before = self._conn.total_changes
            self._conn.executemany(
                "UPDATE outbox SET status = ?, reason = ?, sent_at = ?, next_attempt_at = ?, "
                "attempts = attempts + ?, updated_at = ?, "
                "lease_owner = CASE WHEN ? THEN lease_owner END, "
                "lease_until = CASE WHEN ? THEN lease_until END, "
                "address = coalesce(?, address), message_id = coalesce(?, message_id) "
                "WHERE idempotency_key = ? AND lease_owner = ? AND status = ?",
                rows,
            )
            return self._conn.total_changes - before

    def outbox_leases(self, owner_prefix: str, clock: str) -> dict[str, list[str]]:
        held: dict[str, list[str]] = {}
        escaped = owner_prefix.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
        for owner, key in self._conn.execute(
            "SELECT lease_owner, idempotency_key FROM outbox WHERE status = 'pending' AND "
            "lease_owner LIKE ? ESCAPE '\\' AND lease_until >= ?",
            (escaped + "%", clock),
        ):
            held.setdefault(owner, []).append(key)
        return held

    def release_outbox(self, owner: str, keys: list[str]) -> int:
        if not keys:
            return 0
        with self._transaction():
            before = self._conn.total_changes
            self._conn.executemany(
                "UPDATE outbox SET lease_owner = NULL, lease_until = NULL "
                "WHERE idempotency_key = ? AND lease_owner = ? AND status = 'pending'",
                [(k, owner) for k in keys],
            )
            return self._conn.total_changes - before

    def outbox_status(self, program: str | None = None, channel: str | None = None) -> pa.Table:
        sql, params = "SELECT program, channel, status, count(*) AS rows FROM outbox WHERE 1", ()
        if program is not None:
            sql, params = sql + " AND program = ?", (*params, program)
        if channel is not None:
            sql, params = sql + " AND channel = ?", (*params, channel)
        return self._query(sql + " GROUP BY program, channel, status ORDER BY 1, 2, 3", params)
