"""Streaming source checkpoints: where each shard / partition of a stream was read up to.

A source whose event positions are not one ordered number (Kinesis: a hash of shard and
sequence number) cannot resume from the outcome ledger's ``stream_batches``; it keeps its
own read position per shard here, written after each micro-batch is fully processed.
They live in the run's store, beside the ledger they complement:

- SQLite (``sqlite``, ``sqlite:///path.db``, or a plain file path): a table of that file,
  under its own connection, inspectable with ``sqlite3``:

      stream_checkpoints(program, key, value, updated_at, PRIMARY KEY (program, key))

- DynamoDB (``dynamodb://<prefix>?...``): the store's table ``stream_checkpoints``
  (stores/dynamodb_checkpoints.py), so readers on any worker of a distributed runner, and a
  restarted job, find them.

Keys name the source and its unit (``kinesis:<stream>:<shard>``); values are text (a
sequence number). On both, a checkpoint never moves back: a sequence number (a decimal
number without leading zeros) does not replace a greater one, as the Kinesis Client
Library's checkpointer refuses one below the last, so a reader that lost its shard to
another cannot rewind it. Other values replace the stored one.
"""

from __future__ import annotations

import sqlite3
from pathlib import Path

from ceap.errors import ConfigError
from ceap.home import sqlite_path
from stores.uri import StoreSpec

SCHEMA = """
CREATE TABLE IF NOT EXISTS stream_checkpoints (
    program TEXT NOT NULL, key TEXT NOT NULL, value TEXT NOT NULL, updated_at TEXT NOT NULL,
    PRIMARY KEY (program, key)
);
"""


def checkpoint_path(path_or_spec: str | Path | None) -> Path:
    """The SQLite file for a store spec (``sqlite``, ``sqlite:///abs.db``, ``sqlite:rel.db``)
    or a plain file path. A DynamoDB spec has none: its checkpoints are in a table."""
    if path_or_spec is None or isinstance(path_or_spec, Path):
        return path_or_spec or sqlite_path()
    spec = _store_spec(path_or_spec)
    if spec is None:
        return Path(path_or_spec)
    if not spec.local:
        raise ConfigError(f"stream checkpoints: store {spec} has no SQLite file")
    return spec.database()


def _store_spec(value: str | Path | None) -> StoreSpec | None:
    """``value`` as a store spec when it is one (``sqlite...``, ``dynamodb://...``), else
    None (a plain file path)."""
    text = str(value)
    if text == "sqlite" or text.startswith(("sqlite:", "dynamodb:")) or "://" in text:
        return StoreSpec.parse(text)
    return None


def is_sequence_number(value: str) -> bool:
    """A decimal number without leading zeros: compared by length, then as text."""
    return value.isascii() and value.isdigit() and (value == "0" or not value.startswith("0"))


class Checkpoints:
    """Read positions of streaming sources, per program and key.

    Args:
      path_or_spec: a store spec (as ``RunContext.store``) or a SQLite file path.
    """

    def __init__(self, path_or_spec: str | Path | None = "sqlite") -> None:
        self.path: Path | None = None
        spec = _store_spec(path_or_spec) if isinstance(path_or_spec, str) else None
        if spec is not None and not spec.local:
            from stores.dynamodb.checkpoints import DynamoDBCheckpoints
            from stores.spec import open_store

            self._table: SqliteCheckpoints | DynamoDBCheckpoints = DynamoDBCheckpoints(
                open_store(path_or_spec)
            )
        else:
            self.path = checkpoint_path(path_or_spec)
            self._table = SqliteCheckpoints(self.path)

    def get_checkpoint(self, program: str, key: str) -> str | None:
        return self._table.get_checkpoint(program, key)

    def set_checkpoint(self, program: str, key: str, value: str) -> None:
        """Saves ``value``, unless the stored one is a greater sequence number."""
        from ceap.context import RunContext
        from stores.base import iso

        sequence = is_sequence_number(value)
        self._table.set_checkpoint(program, key, value, iso(RunContext.utcnow()), sequence)

    def checkpoints(self, program: str, prefix: str = "") -> dict[str, str]:
        """key -> value of the program's checkpoints whose key starts with ``prefix``."""
        return self._table.checkpoints(program, prefix)

    def close(self) -> None:
        self._table.close()

    def __enter__(self) -> Checkpoints:
        return self

    def __exit__(self, *_: object) -> None:
        self.close()


class SqliteCheckpoints:
    """The ``stream_checkpoints`` table of a SQLite file, under a connection of its own."""

    def __init__(self, path: Path) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        # One reader DoFn per thread in Beam; setup and teardown may run on different threads.
        self._conn = sqlite3.connect(
            path, timeout=60, isolation_level=None, check_same_thread=False
        )
        self._conn.execute("PRAGMA busy_timeout=60000")
        self._conn.execute("PRAGMA journal_mode=WAL")
        self._conn.executescript(SCHEMA)

    def get_checkpoint(self, program: str, key: str) -> str | None:
        row = self._conn.execute(
            "SELECT value FROM stream_checkpoints WHERE program = ? AND key = ?", (program, key)
        ).fetchone()
        return None if row is None else row[0]

    def set_checkpoint(
        self, program: str, key: str, value: str, updated_at: str, sequence: bool
    ) -> None:
        """Writes ``value``; a ``sequence`` number only over a smaller one (or none)."""
        self._conn.execute(
            "INSERT INTO stream_checkpoints (program, key, value, updated_at) VALUES (?, ?, ?, ?) "
            "ON CONFLICT (program, key) DO UPDATE SET value = excluded.value, "
            "updated_at = excluded.updated_at WHERE NOT ? "
            "OR length(stream_checkpoints.value) < length(excluded.value) "
            "OR (length(stream_checkpoints.value) = length(excluded.value) "
            "AND stream_checkpoints.value <= excluded.value)",
            (program, key, value, updated_at, sequence),
        )

    def checkpoints(self, program: str, prefix: str = "") -> dict[str, str]:
        rows = self._conn.execute(
            "SELECT key, value FROM stream_checkpoints WHERE program = ? AND substr(key, 1, ?) = ?",
            (program, len(prefix), prefix),
        )
        return dict(rows.fetchall())

    def close(self) -> None:
        self._conn.close()
