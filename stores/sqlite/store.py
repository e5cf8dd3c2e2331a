"""The embedded default store: one SQLite file, ``$CEAP_HOME/ceap.db``, in WAL mode.

Users inspect it with ``sqlite3`` or DuckDB: tables ``candidates``, ``outbox`` and
``dead_letters`` carry the record fields of docs/architecture.md, "Tables"; the others are
internal. The outbox and the streaming ledger are mixins of their own (outbox.py, ledger.py).
"""

from __future__ import annotations

import contextlib
import json
import sqlite3
from collections.abc import Iterator
from datetime import datetime
from pathlib import Path
from typing import Any

import pyarrow as pa

from ceap.home import sqlite_path
from stores.base import CANDIDATE_COLUMNS, CandidateStore, iso, response_id
from stores.ports import Role
from stores.sqlite.feedback import SqliteFeedback, migrate_outbox
from stores.sqlite.ledger import SqliteLedger
from stores.sqlite.outbox import SqliteOutbox
from stores.sqlite.schema import (
    CANDIDATE_KEY,
    PAGE_BYTES,
    SCHEMA,
    TYPES,
    UPSERT_CANDIDATE,
    WRITE_CACHE_KIB,
    Transaction,
    bound_rows,
    in_key_order,
    migrate_outbox_steps,
    migrate_responses,
)


class SqliteStore(SqliteOutbox, SqliteLedger, SqliteFeedback, CandidateStore):
    """Every role (stores/ports.py): the embedded default.

    Args:
    path: the database file (default ``$CEAP_HOME/ceap.db``); created with its tables.
    read_only: open without writing (Serving API workers).
    """

    roles = frozenset(Role)

    def __init__(self, path: str | Path | None = None, read_only: bool = False) -> None:
        self.path = Path(path) if path else sqlite_path()
        self._writing = False  # inside writing(): each write joins its transaction
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
            # A new database's page size (an existing one keeps its own): fewer, larger
            # B-tree pages make a bulk write of candidates and outbox rows ~15% cheaper.
            self._conn.execute(f"PRAGMA page_size={PAGE_BYTES}")
            self._conn.execute("PRAGMA journal_mode=WAL")
            self._conn.execute("PRAGMA synchronous=NORMAL")
            # A batch run writes tens of thousands of rows into tables with several indexes:
            # with SQLite's default 2 MB page cache most index pages are re-read on every
            # insert. 64 MB (a ceiling, allocated as used) keeps them for the run.
            self._conn.execute(f"PRAGMA cache_size=-{WRITE_CACHE_KIB}")
            self._conn.executescript(SCHEMA)
            migrate_responses(self._conn)
            migrate_outbox_steps(self._conn)
            migrate_outbox(self._conn)
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

    def _transaction(self) -> Transaction:
        return Transaction(self._conn, joins=self._writing)

    @contextlib.contextmanager
    def writing(self) -> Iterator[None]:
        """One transaction for the writes made inside it (a batch's candidates and their
        outbox rows): committed together, or rolled back together on an error."""
        if self._writing:  # an enclosing block already holds the transaction
            yield
            return
        with Transaction(self._conn):
            self._writing = True
            try:
                yield
            finally:
                self._writing = False

    # -- pipeline writes -----------------------------------------------------------------
    def upsert_candidates(self, candidates: pa.Table) -> int:
        candidates = in_key_order(candidates, CANDIDATE_KEY)
        bound = bound_rows(candidates, [*CANDIDATE_COLUMNS, "created_at"])  # updated_at
        return self._write(UPSERT_CANDIDATE, bound)

    def write_dead_letters(self, rows: pa.Table) -> int:
        bound = bound_rows(rows, ["program", "stage", "reason", "row", "time", "origin"])
        sql = (
            "INSERT OR IGNORE INTO dead_letters (program, stage, reason, row, time, origin) "
            "VALUES (?, ?, ?, ?, ?, ?)"
        )
        return self._write(sql, bound)

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

    # -- lookups -------------------------------------------------------------------------
    def _query(self, sql: str, params: tuple = ()) -> pa.Table:
        cur = self._conn.execute(sql, params)
        names = [d[0] for d in cur.description]
        rows = cur.fetchall()
        if rows:
            columns = list(zip(*rows, strict=True))
            return pa.table({n: pa.array(list(c)) for n, c in zip(names, columns, strict=True)})
        # Empty results keep their types, so callers can concatenate them with full ones.
        return pa.table({n: pa.array([], TYPES.get(n, pa.string())) for n in names})

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
            "event_outcomes", "stream_batches", "engagement_events", "suppressions",
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
