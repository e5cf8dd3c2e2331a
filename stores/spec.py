"""Stores named by a spec string, parsed once (``StoreSpec``, stores/uri.py) and opened here:
``sqlite`` (``$CEAP_HOME/ceap.db``), ``sqlite:///abs.db``, ``sqlite:rel.db`` or
``dynamodb://<table-prefix>?region=..``. The backends import the roles they implement from
``stores.base``; only this module imports the backends, so the package has no import circle."""

from __future__ import annotations

from pathlib import Path

from ceap.errors import ConfigError
from stores.base import CandidateStore
from stores.uri import StoreSpec

__all__ = ["StoreSpec", "open_store", "require_store", "sqlite_file"]


def sqlite_file(spec: str | StoreSpec) -> str | None:
    """The file a ``sqlite:...`` spec names (None: the default store, or not SQLite)."""
    text = str(spec)
    if text != "sqlite" and not text.startswith("sqlite:"):
        return None
    return StoreSpec.parse(spec).file


def require_store(spec: str | StoreSpec) -> None:
    """Commands that read a store someone else wrote (dispatch, export) refuse a SQLite path
    with no database: a typo in ``--store`` would otherwise create an empty one, find
    nothing to do and exit 0. The default store may be absent (nothing has run yet)."""
    path = sqlite_file(spec)
    if path is not None and not Path(path).is_file():
        raise ConfigError(f"--store {spec}: no database at {path} (check the path)")


def open_store(spec: str | StoreSpec = "sqlite") -> CandidateStore:
    """``sqlite`` (``$CEAP_HOME/ceap.db``), ``sqlite:///abs.db``, ``sqlite:rel.db`` or
    ``dynamodb://<table-prefix>?region=..&endpoint_url=..``."""
    parsed = StoreSpec.parse(spec)
    if parsed.kind == "sqlite":
        from stores.sqlite import SqliteStore

        return SqliteStore(parsed.file)
    from stores.dynamodb import DynamoDBStore

    return DynamoDBStore.from_spec(parsed)
