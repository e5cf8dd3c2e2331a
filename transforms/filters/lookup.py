"""Lookups that history-based filters share: a table of counts per key, indexed once and
probed with each batch on text keys, returning one value per batch row in the batch's
order."""

from __future__ import annotations

from collections import Counter
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
from pydantic import BaseModel, ConfigDict, model_validator

from ceap import arrow
from ceap.array_memo import memoized
from ceap.errors import ConfigError
from ceap.key_index import KeyIndex
from ceap.plugins import connectors
from connectors.base import accepts_text_columns


class TableRef(BaseModel):
    """A warehouse table read through a connector, e.g. ``{type: parquet, options: {path: ...}}``."""

    model_config = ConfigDict(extra="forbid")
    type: str
    options: Any = None

    @model_validator(mode="after")
    def _resolve(self) -> TableRef:
        cls = connectors.get(self.type)
        if not isinstance(self.options, BaseModel):
            self.options = cls.Options.model_validate(self.options or {})
        return self

    def read(self, columns: list[str], keys: list[str] | None = None) -> pa.Table:
        """The table's ``columns``; ``keys`` (ids joined on) are read as written, untyped."""
        table = read_keyed(connectors.get(self.type)(self.options), columns, keys or [])
        missing = [c for c in columns if c not in table.column_names]
        if missing:
            raise ConfigError(
                f"{self.type} table has no column(s) {missing}; it has {table.column_names}"
            )
        return table.select(columns)


def read_keyed(connector, columns: list[str] | None, keys: list[str]) -> pa.Table:
    """``connector.read_table`` with the join keys kept as text (a CSV id ``1E5`` must match
    the same text on the candidate, not ``100000``), for connectors that can."""
    if keys and accepts_text_columns(connector.read_table):
        return connector.read_table(columns, text_columns=keys)
    return connector.read_table(columns)


def _joined(table: pa.Table | pa.RecordBatch, keys: list[str]) -> pa.Array:
    """Key columns as one text key per row (unit separator between parts; null if any part is)."""
    parts = [arrow.as_text(table.column(k)) for k in keys]
    if len(parts) == 1:
        joined = parts[0]
    else:  # the same key columns are joined again by the next filter: remembered
        joined = memoized("joined", parts, lambda: pc.binary_join_element_wise(*parts, "\x1f"))
    return joined.combine_chunks() if isinstance(joined, pa.ChunkedArray) else joined


class KeyedCounts:
    """Counts (or presence) per key tuple, looked up for whole batches at once. A null key
    part never matches (as in SQL joins)."""

    def __init__(self, table: pa.Table, keys: list[str]) -> None:
        self._keys = keys
        self._small: tuple[pa.Array, np.ndarray] | None = None
        if table.num_rows < 4 * arrow.SMALL_BATCH:
            # A small table (a streaming micro-batch's customers, a short registry): its keys
            # as one text array, probed with Arrow's vectorised index_in, no DuckDB round trip.
            joined = _joined(table, keys).drop_null().to_pylist() if table.num_rows else []
            counts = Counter(joined)
            values = np.fromiter(counts.values(), dtype=np.int64, count=len(counts))
            self._small = (pa.array(list(counts), pa.string()), values)
            self.size = len(counts)
            return
        cols = {
            f"k{i}": arrow.as_text(table.column(k).combine_chunks()) for i, k in enumerate(keys)
        }
        by = ", ".join(cols)
        present = " AND ".join(f"{c} IS NOT NULL" for c in cols)
        sql = f"SELECT {by}, count(*) AS n FROM raw WHERE {present} GROUP BY {by}"
        counts = arrow.query(arrow.local_duck(), sql, raw=pa.table(cols))
        # Indexed once (ceap/key_index.py): every batch is then answered in time proportional
        # to its rows, where a join per batch scanned the whole history table each time.
        self._index = KeyIndex(_joined(counts, list(cols)))
        self._counts = counts.column("n").to_numpy()
        self.size = counts.num_rows

    def lookup(self, batch: pa.RecordBatch, columns: list[str]) -> np.ndarray:
        """The count for each batch row (0 where absent), in the batch's row order."""
        n = batch.num_rows
        if self.size == 0 or n == 0:
            return np.zeros(n, dtype=np.int64)
        if self._small is not None:
            keys, counts = self._small
            where = pc.index_in(_joined(batch, columns), value_set=keys, skip_nulls=True)
            found = pc.is_valid(where).to_numpy(zero_copy_only=False)
            out = np.zeros(n, dtype=np.int64)
            out[found] = counts[pc.drop_null(where).to_numpy()]
            return out
        rows = self._index.positions(_joined(batch, columns))
        return np.where(rows >= 0, self._counts[rows], 0)
