"""The embedded default store: one SQLite file, ``$CEAP_HOME/ceap.db``, in WAL mode.

Users inspect it with ``sqlite3`` or DuckDB: tables ``candidates``, ``outbox`` and
``dead_letters`` carry the record fields of docs/architecture.md, "Tables"; the others are internal.
"""

from __future__ import annotations

import contextlib
import json
import sqlite3
from datetime import datetime
from pathlib import Path
from typing import Any

import pyarrow as pa

from ceap.home import sqlite_path
from stores.base import CANDIDATE_COLUMNS, OUTBOX_COLUMNS, CandidateStore, iso, response_id
from stores.ports import Role

SCHEMA = """
CREATE TABLE IF NOT EXISTS candidates (
    program TEXT NOT NULL, customer_id TEXT NOT NULL, subject_type TEXT NOT NULL,
    subject_id TEXT NOT NULL, action TEXT NOT NULL, context TEXT NOT NULL DEFAULT '{}',
    score REAL, model_id TEXT, treatment TEXT, created_at TEXT NOT NULL,
    expires_at TEXT NOT NULL, deliver_after TEXT NOT NULL, status TEXT NOT NULL DEFAULT 'live',
    updated_at TEXT,
    PRIMARY KEY (program, customer_id, subject_id)
);
CREATE INDEX IF NOT EXISTS candidates_by_customer ON candidates (customer_id, status);
CREATE TABLE IF NOT EXISTS outbox (
    program TEXT NOT NULL, customer_id TEXT NOT NULL, subject_id TEXT NOT NULL,
    channel TEXT NOT NULL, send_after TEXT NOT NULL, status TEXT NOT NULL DEFAULT 'pending',
    attempts INTEGER NOT NULL DEFAULT 0, idempotency_key TEXT NOT NULL UNIQUE, reason TEXT,
    template TEXT, shadow INTEGER NOT NULL DEFAULT 0, created_at TEXT, updated_at TEXT,
    sent_at TEXT, lease_owner TEXT, lease_until TEXT, next_attempt_at TEXT,
    PRIMARY KEY (program, customer_id, subject_id, channel)
);
CREATE INDEX IF NOT EXISTS outbox_due ON outbox (status, send_after);
CREATE INDEX IF NOT EXISTS outbox_by_customer ON outbox (customer_id, channel, sent_at);
CREATE TABLE IF NOT EXISTS dead_letters (
    id INTEGER PRIMARY KEY AUTOINCREMENT, program TEXT NOT NULL, stage TEXT NOT NULL,
    reason TEXT NOT NULL, row TEXT NOT NULL, time TEXT NOT NULL, origin TEXT NOT NULL,
    UNIQUE (program, stage, origin)
);
CREATE TABLE IF NOT EXISTS opt_outs (
    customer_id TEXT NOT NULL, program TEXT NOT NULL DEFAULT '*', channel TEXT NOT NULL DEFAULT '*',
    created_at TEXT NOT NULL, PRIMARY KEY (customer_id, program, channel)
);
CREATE TABLE IF NOT EXISTS responses (
    program TEXT NOT NULL, customer_id TEXT NOT NULL, subject_id TEXT NOT NULL,
    response TEXT, created_at TEXT NOT NULL, response_id TEXT NOT NULL,
    PRIMARY KEY (program, customer_id, subject_id, response_id)
);
CREATE TABLE IF NOT EXISTS event_outcomes (
    program TEXT NOT NULL, position INTEGER NOT NULL, outcome TEXT NOT NULL, reason TEXT,
    customer_id TEXT, subject_id TEXT, identity TEXT, time TEXT NOT NULL,
    PRIMARY KEY (program, position)
);
CREATE INDEX IF NOT EXISTS event_outcomes_identity ON event_outcomes (program, identity, time);
CREATE TABLE IF NOT EXISTS stream_batches (
    program TEXT NOT NULL, start INTEGER NOT NULL, end INTEGER NOT NULL, size INTEGER NOT NULL,
    read_at TEXT NOT NULL, PRIMARY KEY (program, start)
);
CREATE TABLE IF NOT EXISTS runs (
    run_id TEXT PRIMARY KEY, program TEXT NOT NULL, mode TEXT NOT NULL, started_at TEXT,
    finished_at TEXT, status TEXT, funnel TEXT, error TEXT
);
"""

_UPSERT_CANDIDATE = f"""
INSERT INTO candidates ({", ".join(CANDIDATE_COLUMNS)}, updated_at)
VALUES ({", ".join("?" * len(CANDIDATE_COLUMNS))}, ?)
ON CONFLICT (program, customer_id, subject_id) DO UPDATE SET
    subject_type = excluded.subject_type, action = excluded.action, context = excluded.context,
    score = excluded.score, model_id = excluded.model_id, treatment = excluded.treatment,
    deliver_after = excluded.deliver_after,
    created_at = CASE WHEN candidates.status = 'live' AND candidates.expires_at > excluded.created_at
                      THEN candidates.created_at ELSE excluded.created_at END,
    expires_at = CASE WHEN candidates.status = 'live' AND candidates.expires_at > excluded.created_at
                      THEN candidates.expires_at ELSE excluded.expires_at END,
    status = 'live',
    updated_at = CASE WHEN candidates.status = 'live' AND candidates.expires_at > excluded.created_at
                      THEN candidates.updated_at ELSE excluded.updated_at END
WHERE candidates.status NOT IN ('consumed', 'suppressed')
"""

_OUTBOX_INSERT = [*OUTBOX_COLUMNS, "template", "shadow", "created_at", "updated_at"]
_UPSERT_OUTBOX = f"""
INSERT INTO outbox ({", ".join(_OUTBOX_INSERT)}) VALUES ({", ".join("?" * len(_OUTBOX_INSERT))})
ON CONFLICT (program, customer_id, subject_id, channel) DO NOTHING
"""


_TYPES = {"score": pa.float64(), "attempts": pa.int64(), "shadow": pa.int64(), "id": pa.int64()}


class SqliteStore(CandidateStore):
    """Every role (stores/ports.py): the embedded default.

    Args:
    path: the database file (default ``$CEAP_HOME/ceap.db``); created with its tables.
    read_only: open without writing (Serving API workers).
    """

    roles = frozenset(Role)

    def __init__(self, path: str | Path | None = None, read_only: bool = False) -> None:
        self.path = Path(path) if path else sqlite_path()
        if read_only:
            self._conn = sqlite3.connect(
                f"file:{self.path}?mode=ro", uri=True, timeout=30, check_same_thread=False
            )
        else:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            # Beam may tear a DoFn down on another thread than the one that set it up; one
            # DoFn instance is never used by two threads at once, so this is safe.
            self._conn = sqlite3.connect(
                self.path, timeout=60, isolation_level=None, check_same_thread=False
            )
            self._conn.execute("PRAGMA journal_mode=WAL")
            self._conn.execute("PRAGMA synchronous=NORMAL")
            self._conn.executescript(SCHEMA)
            _migrate_responses(self._conn)
        self._conn.execute("PRAGMA busy_timeout=60000")

    @property
    def connection(self) -> sqlite3.Connection:
        return self._conn

    def _write(self, sql: str, rows: list[tuple]) -> int:
        if not rows:
            return 0
        with self._transaction():
            self._conn.executemany(sql, rows)
        return len(rows)

    def _transaction(self) -> _Transaction:
        return _Transaction(self._conn)

    # -- pipeline writes -----------------------------------------------------------------
    def upsert_candidates(self, candidates: pa.Table) -> int:
        cols = [candidates.column(c).to_pylist() for c in CANDIDATE_COLUMNS]
        updated = candidates.column("created_at").to_pylist()
        return self._write(_UPSERT_CANDIDATE, list(zip(*cols, updated, strict=True)))

    def enqueue_outbox(self, rows: pa.Table) -> int:
        cols = [rows.column(c).to_pylist() for c in _OUTBOX_INSERT[:-1]]
        created = rows.column("created_at").to_pylist()
        with self._transaction():
            before = self._conn.total_changes
            self._conn.executemany(_UPSERT_OUTBOX, list(zip(*cols, created, strict=True)))
            return self._conn.total_changes - before

    def write_dead_letters(self, rows: pa.Table) -> int:
        cols = [
            rows.column(c).to_pylist()
            for c in ("program", "stage", "reason", "row", "time", "origin")
        ]
        sql = (
            "INSERT OR IGNORE INTO dead_letters (program, stage, reason, row, time, origin) "
            "VALUES (?, ?, ?, ?, ?, ?)"
        )
        return self._write(sql, list(zip(*cols, strict=True)))

    def record_run(self, run: dict[str, Any]) -> None:
        keys = [
            "run_id",
            "program",
            "mode",
            "started_at",
            "finished_at",
            "status",
            "funnel",
            "error",
        ]
        values = [run.get(k) for k in keys]
        values[6] = json.dumps(values[6]) if values[6] is not None else None
        self._write(
            f"INSERT OR REPLACE INTO runs ({', '.join(keys)}) VALUES ({', '.join('?' * len(keys))})",
            [tuple(values)],
        )

    # -- streaming ledger ----------------------------------------------------------------
    def record_outcomes(self, program: str, outcomes: pa.Table) -> int:
        from ceap.context import RunContext

        now = iso(RunContext.utcnow())
        names = ("position", "outcome", "reason", "customer_id", "subject_id", "identity")
        cols = [
            outcomes.column(c).to_pylist()
            if c in outcomes.column_names
            else [None] * outcomes.num_rows
            for c in names
        ]
        rows = [(program, *r, now) for r in zip(*cols, strict=True)]
        return self._write(
            "INSERT OR IGNORE INTO event_outcomes (program, position, outcome, reason, customer_id, "
            "subject_id, identity, time) VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
            rows,
        )

    def seen_events(self, program: str, identities: list[str], since: datetime) -> dict[str, int]:
        """identity -> position of events already accounted for since ``since``."""
        seen: dict[str, int] = {}
        for i in range(0, len(identities), 900):
            chunk = identities[i : i + 900]
            marks = ", ".join("?" * len(chunk))
            for identity, position in self._conn.execute(
                f"SELECT identity, min(position) FROM event_outcomes WHERE program = ? AND time >= ? "
                f"AND identity IN ({marks}) GROUP BY identity",
                (program, iso(since), *chunk),
            ):
                seen[identity] = position
        return seen

    def record_stream_batch(self, program: str, start: int, end: int, size: int) -> None:
        from ceap.context import RunContext

        self._write(
            "INSERT OR IGNORE INTO stream_batches (program, start, end, size, read_at) VALUES (?, ?, ?, ?, ?)",
            [(program, start, end, size, iso(RunContext.utcnow()))],
        )

    def resume_position(self, program: str) -> int:
        """Where a restarted stream reads from: the start of the first batch that was read
        but not fully accounted for (its events are replayed; sinks are idempotent), else
        the end of the last batch."""
        rows = self._conn.execute(
            "SELECT b.start, b.end, b.size, (SELECT count(*) FROM event_outcomes o "
            "WHERE o.program = b.program AND o.position >= b.start AND o.position < b.end) "
            "FROM stream_batches b WHERE b.program = ? ORDER BY b.start",
            (program,),
        ).fetchall()
        position = 0
        for start, end, size, done in rows:
            if done < size:
                return start
            position = end
        return position

    def unaccounted_events(self, program: str) -> int:
        """Events read but without an outcome yet (a drain waits for zero)."""
        row = self._conn.execute(
            "SELECT coalesce(sum(size), 0) - (SELECT count(*) FROM event_outcomes WHERE program = ?) "
            "FROM stream_batches WHERE program = ?",
            (program, program),
        ).fetchone()
        return int(row[0])

    # -- lookups -------------------------------------------------------------------------
    def _query(self, sql: str, params: tuple = ()) -> pa.Table:
        cur = self._conn.execute(sql, params)
        names = [d[0] for d in cur.description]
        rows = cur.fetchall()
        if rows:
            columns = list(zip(*rows, strict=True))
            return pa.table({n: pa.array(list(c)) for n, c in zip(names, columns, strict=True)})
        # Empty results keep their types, so callers can concatenate them with full ones.
        return pa.table({n: pa.array([], _TYPES.get(n, pa.string())) for n in names})

    def _for_customers(self, sql: str, params: tuple, customers: list[str] | None) -> pa.Table:
        """``sql`` (a WHERE clause already open), restricted to ``customers`` when given:
        streaming filters look up only the customers of the micro-batch at hand."""
        if customers is None:
            return self._query(sql, params)
        parts = []
        for i in range(0, len(customers), 900):  # SQLite's bound-variable limit
            chunk = customers[i : i + 900]
            parts.append(
                self._query(
                    f"{sql} AND customer_id IN ({', '.join('?' * len(chunk))})", (*params, *chunk)
                )
            )
        if not parts:
            return self._query(f"{sql} AND 0", params)
        return pa.concat_tables(parts, promote_options="permissive")

    def live_keys(
        self, program: str, now: datetime, customers: list[str] | None = None
    ) -> pa.Table:
        return self._for_customers(
            "SELECT customer_id, subject_id, deliver_after FROM candidates "
            "WHERE program = ? AND status = 'live' AND expires_at > ?",
            (program, iso(now)), customers,
        )  # fmt: skip

    def acted_keys(self, program: str | None, customers: list[str] | None = None) -> pa.Table:
        sql = "SELECT DISTINCT program, customer_id, subject_id FROM responses WHERE "
        if program is None:
            return self._for_customers(sql + "1", (), customers)
        return self._for_customers(sql + "program = ?", (program,), customers)

    def contacts(self, since: datetime, customers: list[str] | None = None) -> pa.Table:
        return self._for_customers(
            "SELECT program, customer_id, subject_id, channel, sent_at AS contacted_at FROM outbox "
            "WHERE status = 'sent' AND sent_at >= ?",
            (iso(since),), customers,
        )  # fmt: skip

    def opt_outs(self, customers: list[str] | None = None) -> pa.Table:
        return self._for_customers(
            "SELECT customer_id, NULLIF(program, '*') AS program, NULLIF(channel, '*') AS channel "
            "FROM opt_outs WHERE 1",
            (), customers,
        )  # fmt: skip

    def cached_scores(self, program: str) -> pa.Table:
        return self._query(
            "SELECT customer_id, subject_id, score, model_id FROM candidates "
            "WHERE program = ? AND score IS NOT NULL",
            (program,),
        )

    # -- registries ----------------------------------------------------------------------
    def add_opt_out(self, customer_id: str, program: str | None, channel: str | None) -> None:
        from ceap.context import RunContext

        self._write(
            "INSERT OR IGNORE INTO opt_outs (customer_id, program, channel, created_at) VALUES (?, ?, ?, ?)",
            [(customer_id, program or "*", channel or "*", iso(RunContext.utcnow()))],
        )

    def remove_opt_outs(self, customer_id: str) -> int:
        with self._transaction():
            cur = self._conn.execute("DELETE FROM opt_outs WHERE customer_id = ?", (customer_id,))
        return cur.rowcount

    def record_response(
        self, program: str, customer_id: str, subject_id: str, response: Any,
        key: str | None = None,
    ) -> bool:  # fmt: skip
        from ceap.context import RunContext

        now = iso(RunContext.utcnow())
        with self._transaction():
            self._conn.execute(
                "INSERT OR IGNORE INTO responses (program, customer_id, subject_id, response, "
                "created_at, response_id) VALUES (?, ?, ?, ?, ?, ?)",
                (program, customer_id, subject_id, json.dumps(response, allow_nan=False), now,
                 response_id(now, key)),
            )  # fmt: skip
            cur = self._conn.execute(
                "UPDATE candidates SET status = 'consumed', updated_at = ? "
                "WHERE program = ? AND customer_id = ? AND subject_id = ?",
                (now, program, customer_id, subject_id),
            )
        return cur.rowcount > 0

    def table(self, name: str) -> pa.Table:
        if name not in (
            "candidates", "outbox", "dead_letters", "runs", "opt_outs", "responses",
            "event_outcomes", "stream_batches",
        ):  # fmt: skip
            raise ValueError(f"no table {name!r}")
        return self._query(f"SELECT * FROM {name}")  # noqa: S608 - name is whitelisted

    def close(self) -> None:
        self._conn.close()

    # -- Serving API reads and writes -----------------------------------------------------
    def customer_candidates(
        self, customer_id: str, program: str | None = None, limit: int = 100
    ) -> list[dict]:
        """A customer's live candidates, best score first (index ``candidates_by_customer``).

        Returns dicts of customer_id and the serving fields (docs/architecture.md, "Serving API" plus status and
        deliver_after), context the stored JSON text, as DynamoDBStore's. The caller still
        checks expires_at and deliver_after against its own clock.
        """
        sql = (
            "SELECT customer_id, program, subject_type, subject_id, action, score, model_id, "
            "treatment, context, created_at, expires_at, deliver_after, status FROM candidates "
            "WHERE customer_id = ? AND status = 'live'"
        )
        params: tuple = (customer_id,)
        if program is not None:
            sql, params = sql + " AND program = ?", (*params, program)
        cur = self._conn.execute(
            sql + " ORDER BY score IS NULL, score DESC LIMIT ?", (*params, limit)
        )
        names = [d[0] for d in cur.description]
        return [dict(zip(names, row, strict=True)) for row in cur.fetchall()]

    def expire_candidate(self, program: str, customer_id: str, subject_id: str) -> bool:
        """Marks a live candidate expired (failed a serving re-check); False when it was not live."""
        from ceap.context import RunContext

        with self._transaction():
            cur = self._conn.execute(
                "UPDATE candidates SET status = 'expired', updated_at = ? "
                "WHERE program = ? AND customer_id = ? AND subject_id = ? AND status = 'live'",
                (iso(RunContext.utcnow()), program, customer_id, subject_id),
            )
        return cur.rowcount > 0

    def has_response(self, program: str, customer_id: str, subject_id: str) -> bool:
        """Whether the customer already responded to this subject in this program."""
        row = self._conn.execute(
            "SELECT 1 FROM responses WHERE program = ? AND customer_id = ? AND subject_id = ? LIMIT 1",
            (program, customer_id, subject_id),
        ).fetchone()
        return row is not None

    def is_opted_out(self, customer_id: str, program: str, channel: str | None = None) -> bool:
        """Opted out of this program (or of all) on every channel, or, given ``channel``, on
        that channel too. A channel-only opt-out leaves the other channels deliverable."""
        channels = ("*",) if channel is None else ("*", channel)
        marks = ", ".join("?" * len(channels))
        row = self._conn.execute(
            f"SELECT 1 FROM opt_outs WHERE customer_id = ? AND program IN (?, '*') "
            f"AND channel IN ({marks}) LIMIT 1",
            (customer_id, program, *channels),
        ).fetchone()
        return row is not None

    # -- the dispatcher's outbox ----------------------------------------------------------
    def lease_outbox(
        self,
        owner: str,
        now: str,
        clock: str,
        lease_until: str,
        limit: int,
        programs: list[str],
        channel: str | None = None,
        cap_since: dict[str, str] | None = None,
        screen: Any = None,
    ) -> list[dict]:
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
                "o.send_after, o.attempts, o.idempotency_key, o.template, o.shadow, "
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

    def mark_outbox(self, owner: str, updates: list[dict], clock: str) -> int:
        if not updates:
            return 0
        rows = [
            (
                u["status"], u.get("reason"), u.get("sent_at"), u.get("next_attempt_at"),
                1 if u.get("attempted", True) else 0, clock, keep := int(u.get("keep_lease", False)),
                keep, u["key"], owner, u.get("from_status", "pending"),
            )
            for u in updates
        ]  # fmt: skip
        with self._transaction():
            before = self._conn.total_changes
            self._conn.executemany(
                "UPDATE outbox SET status = ?, reason = ?, sent_at = ?, next_attempt_at = ?, "
                "attempts = attempts + ?, updated_at = ?, "
                "lease_owner = CASE WHEN ? THEN lease_owner END, "
                "lease_until = CASE WHEN ? THEN lease_until END "
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


class _Transaction:
    """``BEGIN IMMEDIATE`` ... ``COMMIT``: one writer at a time, others wait (busy_timeout)."""

    def __init__(self, conn: sqlite3.Connection) -> None:
        self._conn = conn

    def __enter__(self) -> sqlite3.Connection:
        self._conn.execute("BEGIN IMMEDIATE")
        return self._conn

    def __exit__(self, exc_type: object, *_: object) -> None:
        if not exc_type:
            self._conn.execute("COMMIT")
        elif self._conn.in_transaction:
            # SQLite may have rolled back already (a full disk: SQLITE_FULL); a failing
            # ROLLBACK must not replace the error that says why ("database or disk is full").
            with contextlib.suppress(sqlite3.Error):
                self._conn.execute("ROLLBACK")


def _migrate_responses(conn: sqlite3.Connection) -> None:
    """Stores made before responses had ids kept one per key and second (``INSERT OR
    REPLACE``): give each kept row its time as its id, under the new key, in one transaction."""
    columns = [row[1] for row in conn.execute("PRAGMA table_info(responses)")]
    if "response_id" in columns:
        return
    conn.executescript("""
        BEGIN IMMEDIATE;
        ALTER TABLE responses RENAME TO responses_before_ids;
        CREATE TABLE responses (
            program TEXT NOT NULL, customer_id TEXT NOT NULL, subject_id TEXT NOT NULL,
            response TEXT, created_at TEXT NOT NULL, response_id TEXT NOT NULL,
            PRIMARY KEY (program, customer_id, subject_id, response_id)
        );
        INSERT INTO responses SELECT program, customer_id, subject_id, response, created_at,
            created_at FROM responses_before_ids;
        DROP TABLE responses_before_ids;
        COMMIT;
    """)
