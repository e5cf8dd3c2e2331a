"""Small Arrow/DuckDB helpers shared by the vectorised stages."""

from __future__ import annotations

import re
import threading

import duckdb
import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc

UTC_US = pa.timestamp("us", tz="UTC")
SMALL_BATCH = 2048
"""Below this many rows a DuckDB query's fixed cost (~1.5 ms to register, bind and plan)
outweighs its speed: streaming micro-batches take the hash-index / Python paths."""


def quote(name: str) -> str:
    """A DuckDB identifier, quoted so any column name is safe in generated SQL."""
    return '"' + name.replace('"', '""') + '"'


def duck() -> duckdb.DuckDBPyConnection:
    """A new private in-memory DuckDB connection (for state that lives with its owner)."""
    con = duckdb.connect(":memory:")
    # Insertion order stays preserved (DuckDB's default): projections such as the context
    # JSON and the idempotency keys must line up with the batch's rows.
    con.execute("SET TimeZone = 'UTC'")
    return con


_local = threading.local()


def local_duck() -> duckdb.DuckDBPyConnection:
    """This thread's reusable connection for one-off queries: opening one costs ~15 ms,
    more than most vectorised steps. Callers register and unregister their own tables."""
    con = getattr(_local, "con", None)
    if con is None:
        con = _local.con = duck()
    return con


def query(
    con: duckdb.DuckDBPyConnection, sql: str, **tables: pa.Table | pa.RecordBatch
) -> pa.Table:
    """Runs ``sql`` over the given Arrow tables (registered by name, zero copy)."""
    for name, table in tables.items():
        if isinstance(table, pa.RecordBatch):
            table = pa.Table.from_batches([table])
        con.register(name, table)
    try:
        return con.sql(sql).to_arrow_table()
    finally:
        for name in tables:
            con.unregister(name)


def distinct_rows(table: pa.Table) -> int:
    """How many different rows ``table`` holds (a DuckDB hash aggregate on both cores; a
    null is a value like any other)."""
    sql = "SELECT count(*) AS n FROM (SELECT DISTINCT * FROM t)"
    return int(query(local_duck(), sql, t=table).column("n")[0].as_py())


def iso_seconds(times: pa.Array | pa.ChunkedArray) -> pa.Array | pa.ChunkedArray:
    """Timestamps as the store's text, ``YYYY-MM-DDTHH:MM:SSZ`` in UTC (truncated to the
    second; nulls stay null): Arrow's cast to text, 4x faster than its ``strftime``."""
    seconds = pc.cast(times, pa.timestamp("s", tz="UTC"), safe=False).cast(pa.timestamp("s"))
    text = pc.replace_substring(pc.cast(seconds, pa.string()), " ", "T", max_replacements=1)
    return pc.binary_join_element_wise(text, "Z", "")


def to_utc(values: pa.Array | pa.ChunkedArray) -> tuple[pa.Array, pa.Array]:
    """Any time-like column as timestamp[us, UTC]: timestamps (naive ones taken as UTC),
    dates, ISO-8601 text. Returns (times, ok) where ok is False for present values that
    did not parse; nulls stay null with ok True."""
    if isinstance(values, pa.ChunkedArray):
        values = values.combine_chunks()
    kind = values.type
    if pa.types.is_timestamp(kind):
        out = values if kind.tz else pc.assume_timezone(values, "UTC")
        # Truncated to microseconds: nanosecond times (pandas) would fail a safe cast.
        return out.cast(UTC_US, safe=False), pa.repeat(True, len(values))
    if pa.types.is_date(kind):
        return values.cast(pa.timestamp("us")).cast(UTC_US), pa.repeat(True, len(values))
    if pa.types.is_string(kind) or pa.types.is_large_string(kind):
        out = pa.array(parse_times(values.to_pandas()), UTC_US, from_pandas=True)
        ok = pc.or_(pc.is_valid(out), pc.is_null(values))
        return out, ok
    return pa.nulls(len(values), UTC_US), pc.is_null(values)


_OFFSET = re.compile(r"\d{2}:\d{2}(?::\d{2}(?:[.,]\d+)?)?\s*(?:[Zz]|[+-]\d{2}(?::?\d{2})?)\s*$")
"""A time of day followed by a UTC offset (``10:00Z``, ``10:00:00-08:00``, ``10:00+0530``)."""


def parse_times(text: pd.Series, timezone: str = "UTC") -> pd.Series:
    """ISO-8601 text as UTC times, each value by its own rule: one with an offset keeps it,
    one without is in ``timezone`` (a local time that does not exist, or exists twice, at a
    DST change is NaT). pandas alone gives a naive value the offset of the value before it
    (``10:00`` after a ``-08:00`` row became 18:00 UTC). Unparsable values are NaT."""
    text = text.astype("string").str.strip()
    aware = text.str.contains(_OFFSET, na=False).to_numpy(dtype=bool)
    naive = ~aware & text.notna().to_numpy(dtype=bool)
    out = pd.Series(pd.NaT, index=text.index, dtype="datetime64[ns, UTC]")
    if aware.any():
        out[aware] = pd.to_datetime(text[aware], errors="coerce", utc=True, format="ISO8601")
    if naive.any():
        local = pd.to_datetime(text[naive], errors="coerce", format="ISO8601")
        if getattr(local.dt, "tz", None) is None:
            local = local.dt.tz_localize(timezone, ambiguous="NaT", nonexistent="NaT")
        out[naive] = local.dt.tz_convert("UTC")
    return out


def is_key_type(kind: pa.DataType) -> bool:
    return (
        pa.types.is_string(kind)
        or pa.types.is_large_string(kind)
        or pa.types.is_integer(kind)
        or (pa.types.is_dictionary(kind) and pa.types.is_string(kind.value_type))
    )


def as_text(values: pa.Array) -> pa.Array:
    """Key columns as text, so ``123`` in one table joins ``"123"`` in another."""
    if pa.types.is_dictionary(values.type):
        values = values.dictionary_decode()
    return values if pa.types.is_string(values.type) else pc.cast(values, pa.string())


def trim_whitespace(values: pa.Array) -> pa.Array:
    """``utf8_trim_whitespace``, skipped when no value begins or ends with a byte that could
    be whitespace (a control, a space or a non-ASCII byte): ids, the common case, then keep
    their buffers instead of being copied string by string."""
    if isinstance(values, pa.Array) and pa.types.is_string(values.type) and len(values):
        offsets = np.frombuffer(values.buffers()[1], np.int32)[
            values.offset : values.offset + len(values) + 1
        ]
        filled = np.diff(offsets) > 0
        data = values.buffers()[2]
        if data is None or not filled.any():
            return values
        text = np.frombuffer(data, np.uint8)
        edges = np.concatenate([text[offsets[:-1][filled]], text[offsets[1:][filled] - 1]])
        if ((edges > 0x20) & (edges < 0x7F)).all():
            return values
    return pc.utf8_trim_whitespace(values)
