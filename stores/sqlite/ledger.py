"""The streaming ledger on SQLite: one outcome per event position, the micro-batches a source
emitted, and where a restarted stream resumes (see transforms/outcomes.py)."""

from __future__ import annotations

from datetime import datetime

import pyarrow as pa

from stores.base import iso


class SqliteLedger:
    """The ``streaming ledger`` role of SqliteStore (a mixin over its connection)."""

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
