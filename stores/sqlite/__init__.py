"""The embedded default store (SQLite): ``SqliteStore`` and its roles, one module each."""

from stores.sqlite.store import SqliteStore

__all__ = ["SqliteStore"]
