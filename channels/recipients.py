"""Who a message goes to: the customer's addresses, time zone and locale.

Chosen per channel: ``options.recipients: {type: parquet, options: {path}, key: customer_id}``
names a customers table (the warehouse's ``customers`` has ``email``, ``phone``,
``timezone``, ``locale``); without it the candidate's own context is used (list the columns
in the program's ``fields.context``). The table wins where both have a column: addresses
change, and a candidate's context is a snapshot taken when it was created.

The table is read once per dispatcher process and kept in memory (a dict per customer),
which suits tables of millions of rows; it is re-read when the file changes.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pyarrow.dataset as ds

from ceap.errors import ConfigError
from channels.base import RecipientsConfig

_CACHE: dict[tuple[str, str], tuple[float, dict[str, dict[str, Any]]]] = {}


class Recipients:
    """Looks customers up in the configured table (if any), then in the candidate context."""

    def __init__(self, config: RecipientsConfig | None) -> None:
        self._config = config
        self._table: dict[str, dict[str, Any]] | None = None

    def lookup(self, customer_id: str, context: dict[str, Any]) -> dict[str, Any]:
        if self._config is None:
            return dict(context)
        if self._table is None:
            self._table = _load(self._config)
        return {**context, **self._table.get(str(customer_id), {})}


def _load(config: RecipientsConfig) -> dict[str, dict[str, Any]]:
    if config.type != "parquet":
        raise ConfigError(f"recipients: type {config.type!r} is not supported (parquet only)")
    path = config.options.get("path")
    if not path:
        raise ConfigError("recipients.options.path: the customers table is required")
    stamp = _mtime(Path(path))
    cached = _CACHE.get((path, config.key))
    if cached and cached[0] == stamp:
        return cached[1]
    table = ds.dataset(path, format="parquet").to_table()
    if config.key not in table.column_names:
        raise ConfigError(f"recipients: {path} has no column {config.key!r}")
    by_id = {str(row[config.key]): row for row in table.to_pylist()}
    _CACHE[(path, config.key)] = (stamp, by_id)
    return by_id


def _mtime(path: Path) -> float:
    if path.is_dir():
        return max((p.stat().st_mtime for p in path.rglob("*.parquet")), default=0.0)
    return path.stat().st_mtime if path.exists() else 0.0
