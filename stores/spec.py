"""Stores named by a spec string, parsed once (``StoreSpec``) and opened in one place:
``sqlite`` (``$CEAP_HOME/ceap.db``), ``sqlite:///abs.db``, ``sqlite:rel.db`` or
``dynamodb://<table-prefix>?region=..``. The backends import the roles they implement from
``stores.base``; only this module imports the backends, so the package has no import circle."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import parse_qsl, urlsplit

from ceap.errors import ConfigError
from ceap.home import sqlite_path
from stores.base import CandidateStore

DYNAMODB_PARAMS = frozenset({"region", "endpoint_url", "consistent", "create"})
EXPECTED = "expected sqlite, sqlite:///path.db or dynamodb://<table-prefix>?region=.."


@dataclass(frozen=True)
class StoreSpec:
    """A parsed store spec. ``kind`` is ``sqlite`` or ``dynamodb``; a SQLite spec has its
    ``file`` (None: the embedded default), a DynamoDB one its table ``prefix`` and
    ``params`` (region, endpoint_url, consistent, create)."""

    text: str
    kind: str
    file: str | None = None
    prefix: str = ""
    params: dict[str, str] = field(default_factory=dict)

    @classmethod
    def parse(cls, spec: str | StoreSpec) -> StoreSpec:
        if isinstance(spec, StoreSpec):
            return spec
        if spec == "sqlite" or spec.startswith("sqlite:"):
            file = spec.split(":", 1)[1].removeprefix("//") if ":" in spec else ""
            return cls(spec, "sqlite", file=file or None)
        if spec.startswith("dynamodb:"):
            parts = urlsplit(spec)
            params = dict(parse_qsl(parts.query))
            unknown = sorted(set(params) - DYNAMODB_PARAMS)
            if parts.scheme != "dynamodb" or unknown:
                raise ConfigError(
                    f"bad store {spec!r} (unknown {unknown}); expected dynamodb://"
                    "<table-prefix>?region=..&endpoint_url=..&consistent=true"
                )
            prefix = parts.netloc + parts.path.lstrip("/")
            return cls(spec, "dynamodb", prefix=prefix, params=params)
        raise ConfigError(f"unknown store {spec!r}; {EXPECTED}")

    @property
    def local(self) -> bool:
        """A file on this machine (SQLite), which workers on other hosts cannot reach."""
        return self.kind == "sqlite"

    def database(self) -> Path:
        """SQLite: the database file, the embedded default resolved against ``CEAP_HOME``."""
        return Path(self.file) if self.file else sqlite_path()

    def absolute(self) -> StoreSpec:
        """The same store named so any process finds it whatever its working directory
        (``sqlite:///abs/file.db``); other kinds are returned as they are."""
        if not self.local:
            return self
        return StoreSpec.parse(f"sqlite://{self.database().resolve()}")  # sqlite:/// + /abs

    def __str__(self) -> str:
        return self.text


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

    return DynamoDBStore.from_spec(parsed.text)
