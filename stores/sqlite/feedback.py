"""Delivery feedback on SQLite (DESIGN §8): the ``engagement_events`` table, the address
suppression list, and finding the outbox row a provider's feedback is about."""

from __future__ import annotations

import sqlite3

from stores.base import ENGAGEMENT_COLUMNS, address_key

SCHEMA = """
CREATE TABLE IF NOT EXISTS engagement_events (
    program TEXT NOT NULL, customer_id TEXT NOT NULL, subject_id TEXT NOT NULL,
    channel TEXT NOT NULL, step TEXT NOT NULL, idempotency_key TEXT NOT NULL,
    event TEXT NOT NULL, at TEXT NOT NULL, detail TEXT, event_id TEXT NOT NULL DEFAULT '',
    received_at TEXT NOT NULL,
    PRIMARY KEY (idempotency_key, event, event_id)
);
CREATE INDEX IF NOT EXISTS engagement_by_program ON engagement_events (program, channel, event);
CREATE INDEX IF NOT EXISTS engagement_by_time ON engagement_events (at);
CREATE INDEX IF NOT EXISTS engagement_by_candidate ON engagement_events (program, customer_id, subject_id);
CREATE TABLE IF NOT EXISTS suppressions (
    address TEXT PRIMARY KEY, reason TEXT NOT NULL, at TEXT NOT NULL
);
"""
_MESSAGE_COLUMNS = (
    "program", "customer_id", "subject_id", "channel", "step", "idempotency_key", "address",
    "message_id", "status", "shadow",
)  # fmt: skip


MESSAGE_ID_INDEX = (
    "CREATE INDEX IF NOT EXISTS outbox_by_message_id ON outbox (message_id) "
    "WHERE message_id IS NOT NULL"
)
"""Partial: only sent rows have a provider's message id, so the pipeline's inserts (none
yet) skip this index; ``message_id = ?`` implies the condition, so lookups still use it."""


def migrate_outbox(conn: sqlite3.Connection) -> None:
    """Outboxes made before feedback lack the address a row was sent to and the provider's
    message id: add them (empty for rows sent before). An index of every row's message id
    (before it was partial) is rebuilt as the partial one."""
    columns = {row[1] for row in conn.execute("PRAGMA table_info(outbox)")}
    for column in ("address", "message_id"):
        if column not in columns:
            conn.execute(f"ALTER TABLE outbox ADD COLUMN {column} TEXT")
    (index,) = conn.execute(
        "SELECT coalesce(max(sql), '') FROM sqlite_master WHERE name = 'outbox_by_message_id'"
    ).fetchone()
    if index and "WHERE" not in index.upper():
        conn.execute("DROP INDEX IF EXISTS outbox_by_message_id")  # another opener may have
    conn.execute(MESSAGE_ID_INDEX)
    conn.executescript(SCHEMA)


class SqliteFeedback:
    """The ``delivery feedback`` role of SqliteStore (a mixin over its connection)."""

    def find_message(self, key: str | None = None, message_id: str | None = None) -> dict | None:
        if key is None and message_id is None:
            return None
        column, value = ("idempotency_key", key) if key is not None else ("message_id", message_id)
        cur = self._conn.execute(
            f"SELECT {', '.join(_MESSAGE_COLUMNS)} FROM outbox WHERE {column} = ? LIMIT 1",  # noqa: S608 - fixed names
            (value,),
        )
        row = cur.fetchone()
        return dict(zip(_MESSAGE_COLUMNS, row, strict=True)) if row else None

    def record_engagement(self, events: list[dict]) -> list[bool]:
        from ceap.context import RunContext
        from stores.base import iso

        received = iso(RunContext.utcnow())
        columns = [*ENGAGEMENT_COLUMNS, "event_id", "received_at"]
        rows = [
            (*(e.get(c) for c in ENGAGEMENT_COLUMNS), e.get("event_id") or "", received)
            for e in events
        ]
        sql = (
            f"INSERT OR IGNORE INTO engagement_events ({', '.join(columns)}) "  # noqa: S608
            f"VALUES ({', '.join('?' * len(columns))})"
        )
        if not rows:
            return []
        with self._transaction():
            return [self._conn.execute(sql, row).rowcount == 1 for row in rows]

    def suppress_addresses(self, entries: list[tuple[str, str, str]]) -> int:
        rows = [(address_key(a), reason, at) for a, reason, at in entries if a and a.strip()]
        if not rows:
            return 0
        with self._transaction():
            before = self._conn.total_changes
            self._conn.executemany(
                "INSERT OR IGNORE INTO suppressions (address, reason, at) VALUES (?, ?, ?)", rows
            )
            return self._conn.total_changes - before

    def suppressed_addresses(self, addresses: list[str]) -> dict[str, str]:
        keys: dict[str, list[str]] = {}  # normalised -> every spelling asked about
        for a in addresses:
            if a:
                keys.setdefault(address_key(a), []).append(a)
        found: dict[str, str] = {}
        names = sorted(keys)
        for i in range(0, len(names), 900):
            chunk = names[i : i + 900]
            for address, reason in self._conn.execute(
                f"SELECT address, reason FROM suppressions WHERE address IN ({', '.join('?' * len(chunk))})",  # noqa: S608
                chunk,
            ):
                found.update(dict.fromkeys(keys[address], reason))
        return found
