"""Streaming source checkpoints: where each shard / partition of a stream was read up to.

A source whose event positions are not one ordered number (Kinesis: a hash of shard and
sequence number) cannot resume from the outcome ledger's ``stream_batches``; it keeps its
own read position per shard here, written after each micro-batch is fully processed.
The table lives in the embedded store's SQLite file (``$CEAP_HOME/ceap.db`` or the file of
a ``sqlite:///path.db`` spec) under its own connection, so it is inspectable with
``sqlite3`` beside the ledger it complements:

    stream_checkpoints(program, key, value, updated_at, PRIMARY KEY (program, key))

Keys name the source and its unit (``kinesis:<stream>:<shard>``); values are text
(a sequence number). A store that is not SQLite (``dynamodb://...``) has no such file: the
checkpoints then go to ``$CEAP_HOME/ceap.db`` of the machine the reader runs on.
"""

from __future__ import annotations

import logging
import sqlite3
from pathlib import Path

from ceap.home import sqlite_path

log = logging.getLogger(__name__)

SCHEMA = """
CREATE TABLE IF NOT EXISTS stream_checkpoints (
    program TEXT NOT NULL, key TEXT NOT NULL, value TEXT NOT NULL, updated_at TEXT NOT NULL,
    PRIMARY KEY (program, key)
);
"""


def checkpoint_path(path_or_spec: str | Path | None) -> Path:
    """The SQLite file for a store spec (``sqlite``, ``sqlite:///abs.db``, ``sqlite:rel.db``)
    or a plain file path; the embedded default for any other store."""
    if path_or_spec is None or isinstance(path_or_spec, Path):
        return path_or_spec or sqlite_path()
    spec = str(path_or_spec)
    if spec == "sqlite" or spec.startswith("sqlite:"):
        from stores.spec import open_store

        store = open_store(spec)  # the store's own reading of its spec, and its tables
        try:
            return Path(store.path)
        finally:
            store.close()
    if "://" in spec or spec.startswith("dynamodb:"):
        log.warning(
            "stream checkpoints of store %r are kept in %s (local to this machine)",
            spec,
            sqlite_path(),
        )
        return sqlite_path()
    return Path(spec)


class Checkpoints:
    """Read positions of streaming sources, per program and key.

    Args:
      path_or_spec: a store spec (as ``RunContext.store``) or a SQLite file path.
    """

    def __init__(self, path_or_spec: str | Path | None = "sqlite") -> None:
        self.path = checkpoint_path(path_or_spec)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        # One reader DoFn per thread in Beam; setup and teardown may run on different threads.
        self._conn = sqlite3.connect(
            self.path, timeout=60, isolation_level=None, check_same_thread=False
        )
        self._conn.execute("PRAGMA busy_timeout=60000")
        self._conn.execute("PRAGMA journal_mode=WAL")
        self._conn.executescript(SCHEMA)

    def get_checkpoint(self, program: str, key: str) -> str | None:
        row = self._conn.execute(
            "SELECT value FROM stream_checkpoints WHERE program = ? AND key = ?", (program, key)
        ).fetchone()
        return None if row is None else row[0]

    def set_checkpoint(self, program: str, key: str, value: str) -> None:
        from ceap.context import RunContext
        from stores.base import iso

        self._conn.execute(
            "INSERT INTO stream_checkpoints (program, key, value, updated_at) VALUES (?, ?, ?, ?) "
            "ON CONFLICT (program, key) DO UPDATE SET value = excluded.value, "
            "updated_at = excluded.updated_at",
            (program, key, value, iso(RunContext.utcnow())),
        )

    def checkpoints(self, program: str, prefix: str = "") -> dict[str, str]:
        """key -> value of the program's checkpoints whose key starts with ``prefix``."""
        rows = self._conn.execute(
            "SELECT key, value FROM stream_checkpoints WHERE program = ? AND substr(key, 1, ?) = ?",
            (program, len(prefix), prefix),
        )
        return dict(rows.fetchall())

    def close(self) -> None:
        self._conn.close()

    def __enter__(self) -> Checkpoints:
        return self

    def __exit__(self, *_: object) -> None:
        self.close()
