"""Lookups that history-based filters share: a table in a private DuckDB, joined with a
batch on text keys, returning one value per batch row in the batch's order."""

from __future__ import annotations

from typing import Any

import numpy as np
import pyarrow as pa
from pydantic import BaseModel, ConfigDict, model_validator

from ceap import arrow
from ceap.errors import ConfigError
from ceap.plugins import connectors


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

    def read(self, columns: list[str]) -> pa.Table:
        table = connectors.get(self.type)(self.options).read_table(columns)
        missing = [c for c in columns if c not in table.column_names]
        if missing:
            raise ConfigError(
                f"{self.type} table has no column(s) {missing}; it has {table.column_names}"
            )
        return table.select(columns)


class KeyedCounts:
    """Counts (or presence) per key tuple, looked up for whole batches at once."""

    def __init__(self, table: pa.Table, keys: list[str]) -> None:
        self._keys = keys
        cols = {
            f"k{i}": arrow.as_text(table.column(k).combine_chunks()) for i, k in enumerate(keys)
        }
        grouped = (
            pa.table(cols)
            if table.num_rows
            else pa.table({c: pa.array([], pa.string()) for c in cols})
        )
        self._con = arrow.duck()
        by = ", ".join(cols)
        self._con.register("raw", grouped)
        self._con.execute(
            f"CREATE TABLE counts AS SELECT {by}, count(*) AS n FROM raw GROUP BY {by}"
        )
        self._con.unregister("raw")
        self.size = int(self._con.execute("SELECT count(*) FROM counts").fetchall()[0][0])

    def lookup(self, batch: pa.RecordBatch, columns: list[str]) -> np.ndarray:
        """The count for each batch row (0 where absent), in the batch's row order."""
        n = batch.num_rows
        if self.size == 0 or n == 0:
            return np.zeros(n, dtype=np.int64)
        left = pa.table({
            "_i": pa.array(np.arange(n, dtype=np.int64)),
            **{f"k{i}": arrow.as_text(batch.column(c)) for i, c in enumerate(columns)},
        })  # fmt: skip
        on = " AND ".join(f"b.k{i} = c.k{i}" for i in range(len(columns)))
        # Only the matches come back (no sort, no row per miss); numpy scatters them.
        hits = arrow.query(self._con, f"SELECT b._i, c.n FROM b JOIN counts c ON {on}", b=left)
        out = np.zeros(n, dtype=np.int64)
        out[hits.column("_i").to_numpy()] = hits.column("n").to_numpy()
        return out

    def close(self) -> None:
        self._con.close()
