"""A store's spec string parsed once: ``sqlite`` (``$CEAP_HOME/ceap.db``), ``sqlite:///abs.db``,
``sqlite:rel.db`` or ``dynamodb://<table-prefix>?region=..``. Imports no backend, so every
backend may read its own spec with it (``stores/spec.py`` opens them)."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import parse_qsl, urlsplit

from ceap.errors import ConfigError
from ceap.home import sqlite_path

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
