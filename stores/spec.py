"""Stores named by a spec string, opened in one place: ``sqlite`` (``$CEAP_HOME/ceap.db``),
``sqlite:///abs.db``, ``sqlite:rel.db`` or ``dynamodb://<table-prefix>?region=..``. The
backends import the roles they implement from ``stores.base``; only this module imports the
backends, so the package has no import circle."""

from __future__ import annotations

from pathlib import Path

from ceap.errors import ConfigError
from stores.base import CandidateStore


def sqlite_file(spec: str) -> str | None:
    """The file a ``sqlite:...`` spec names (None: the default store, or not SQLite)."""
    if not spec.startswith("sqlite:"):
        return None
    return spec.split(":", 1)[1].removeprefix("//") or None


def require_store(spec: str) -> None:
    """Commands that read a store someone else wrote (dispatch, export) refuse a SQLite path
    with no database: a typo in ``--store`` would otherwise create an empty one, find
    nothing to do and exit 0. The default store may be absent (nothing has run yet)."""
    path = sqlite_file(spec)
    if path is not None and not Path(path).is_file():
        raise ConfigError(f"--store {spec}: no database at {path} (check the path)")


def open_store(spec: str = "sqlite") -> CandidateStore:
    """``sqlite`` (``$CEAP_HOME/ceap.db``), ``sqlite:///abs.db``, ``sqlite:rel.db`` or
    ``dynamodb://<table-prefix>?region=..&endpoint_url=..``."""
    if spec == "sqlite" or spec.startswith("sqlite:"):
        from stores.sqlite import SqliteStore

        return SqliteStore(sqlite_file(spec))
    if spec.startswith("dynamodb:"):
        from stores.dynamodb import DynamoDBStore

        return DynamoDBStore.from_spec(spec)
    raise ConfigError(
        f"unknown store {spec!r}; expected sqlite, sqlite:///path.db or dynamodb://prefix"
    )
