"""The embedded store's SQLite schema, its migrations and its write transaction.

Tables ``candidates``, ``outbox``, ``dead_letters`` and ``responses`` carry the record fields of docs/architecture.md, "Tables"; the others are internal.
"""

from __future__ import annotations

import contextlib
import itertools
import sqlite3
from collections.abc import Iterable

import pyarrow as pa
import pyarrow.compute as pc

from stores.base import CANDIDATE_COLUMNS, OUTBOX_COLUMNS

OUTBOX_TABLE = """
    program TEXT NOT NULL, customer_id TEXT NOT NULL, subject_id TEXT NOT NULL,
    channel TEXT NOT NULL, step TEXT NOT NULL, send_after TEXT NOT NULL,
    status TEXT NOT NULL DEFAULT 'pending', attempts INTEGER NOT NULL DEFAULT 0,
    idempotency_key TEXT NOT NULL UNIQUE, reason TEXT, template TEXT,
    shadow INTEGER NOT NULL DEFAULT 0, created_at TEXT, updated_at TEXT, sent_at TEXT,
    lease_owner TEXT, lease_until TEXT, next_attempt_at TEXT, address TEXT, message_id TEXT,
    PRIMARY KEY (program, customer_id, subject_id, step)
"""
"""One row per candidate and journey step (DESIGN §9; ``step`` is the channel type unless
the step is named). ``waiting`` rows are not in ``outbox_due``'s way: a dispatcher's scan
reads pending rows only."""
OUTBOX_INDEXES = """
CREATE INDEX IF NOT EXISTS outbox_due ON outbox (status, send_after);
CREATE INDEX IF NOT EXISTS outbox_by_customer ON outbox (customer_id, channel, sent_at);
"""

SCHEMA = (
    """
CREATE TABLE IF NOT EXISTS candidates (
    program TEXT NOT NULL, customer_id TEXT NOT NULL, subject_type TEXT NOT NULL,
    subject_id TEXT NOT NULL, action TEXT NOT NULL, context TEXT NOT NULL DEFAULT '{}',
    score REAL, model_id TEXT, treatment TEXT, created_at TEXT NOT NULL,
    expires_at TEXT NOT NULL, deliver_after TEXT NOT NULL, status TEXT NOT NULL DEFAULT 'live',
    updated_at TEXT,
    PRIMARY KEY (program, customer_id, subject_id)
);
CREATE INDEX IF NOT EXISTS candidates_by_customer ON candidates (customer_id, status);
CREATE TABLE IF NOT EXISTS outbox ("""
    + OUTBOX_TABLE
    + """);
"""
    + OUTBOX_INDEXES
    + """CREATE TABLE IF NOT EXISTS dead_letters (
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
)

UPSERT_CANDIDATE = f"""
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

OUTBOX_KEY = ["program", "customer_id", "subject_id", "step"]
CANDIDATE_KEY = ["program", "customer_id", "subject_id"]
PAGE_BYTES = 16_384
"""The page size of a new database (SQLite's default is 4,096)."""
WRITE_CACHE_KIB = 65_536
"""The page cache of a writing connection (``PRAGMA cache_size``), in KiB."""


def in_key_order(rows: pa.Table, key: list[str]) -> pa.Table:
    """Rows sorted by the table's primary key before a bulk insert: each index page is then
    visited once, in order, instead of at random (a 150k-row outbox write took twice as long
    in arrival order)."""
    return rows.sort_by([(c, "ascending") for c in key]) if rows.num_rows > 1 else rows


OUTBOX_INSERT = [*OUTBOX_COLUMNS, "template", "shadow", "created_at", "step", "updated_at"]
UPSERT_OUTBOX = f"""
INSERT INTO outbox ({", ".join(OUTBOX_INSERT)}) VALUES ({", ".join("?" * len(OUTBOX_INSERT))})
ON CONFLICT (program, customer_id, subject_id, step) DO NOTHING
"""


def bound_rows(table: pa.Table, columns: list[str]) -> list[tuple]:
    """The rows of ``columns`` as tuples to bind. A column with one value throughout (the
    program, the action, the run's times: most of a candidate's and an outbox row's) is
    repeated rather than converted row by row (a fifth of a 150k-row outbox write)."""
    n = table.num_rows
    return list(zip(*(_values(table.column(c), n) for c in columns), strict=True))


def _values(column: pa.ChunkedArray, n: int) -> Iterable:
    # Floats are converted row by row: equality holds 0.0 and -0.0 the same.
    if n > 1 and not pa.types.is_floating(column.type):
        if column.null_count == n:
            return itertools.repeat(None, n)
        first = column[0]
        with contextlib.suppress(pa.ArrowNotImplementedError):  # a type without equality
            if not column.null_count and pc.all(pc.equal(column, first)).as_py():
                return itertools.repeat(first.as_py(), n)
    return column.to_pylist()


TYPES = {"score": pa.float64(), "attempts": pa.int64(), "shadow": pa.int64(), "id": pa.int64()}


class Transaction:
    """``BEGIN IMMEDIATE`` ... ``COMMIT``: one writer at a time, others wait (busy_timeout).
    ``joins``: part of an enclosing block the store opened (``SqliteStore.writing``), so
    nothing begins or ends here; an error reaches that block, which rolls back. A
    transaction left open by an earlier failure is never joined: BEGIN then fails, loudly."""

    def __init__(self, conn: sqlite3.Connection, joins: bool = False) -> None:
        self._conn = conn
        self._joins = joins

    def __enter__(self) -> sqlite3.Connection:
        if not self._joins:
            self._conn.execute("BEGIN IMMEDIATE")
        return self._conn

    def __exit__(self, exc_type: object, *_: object) -> None:
        if self._joins:
            return
        if not exc_type:
            try:
                self._conn.execute("COMMIT")
            except sqlite3.Error:
                self._rollback()  # a failed COMMIT must not leave the transaction open
                raise
        else:
            self._rollback()

    def _rollback(self) -> None:
        if self._conn.in_transaction:
            # SQLite may have rolled back already (a full disk: SQLITE_FULL); a failing
            # ROLLBACK must not replace the error that says why ("database or disk is full").
            with contextlib.suppress(sqlite3.Error):
                self._conn.execute("ROLLBACK")


def migrate_outbox_steps(conn: sqlite3.Connection) -> None:
    """Outboxes made before journeys had one row per channel: each row becomes its channel's
    step (the name a step without ``name:`` has), under the new key, in one transaction."""
    columns = [row[1] for row in conn.execute("PRAGMA table_info(outbox)")]
    if "step" in columns:
        return
    kept = ", ".join(columns)
    conn.executescript(f"""
        BEGIN IMMEDIATE;
        ALTER TABLE outbox RENAME TO outbox_before_steps;
        CREATE TABLE outbox ({OUTBOX_TABLE});
        INSERT INTO outbox ({kept}, step) SELECT {kept}, channel FROM outbox_before_steps;
        DROP TABLE outbox_before_steps;
        {OUTBOX_INDEXES}
        COMMIT;
    """)  # noqa: S608 - column names from the table itself


def migrate_responses(conn: sqlite3.Connection) -> None:
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
