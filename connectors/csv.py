"""``csv``: delimited text files with a header row (local or any Beam filesystem URI).

Column types are inferred over the whole file, as a person reading it would: a column
whose values are numbers (or booleans, or ISO times) becomes that type, and a cell that
does not parse becomes null with the row marked for the dead-letter sink, instead of
turning the whole column into text or failing the file.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv as pcsv
from pydantic import BaseModel, ConfigDict, Field

from ceap.plugins import connectors
from connectors.base import BATCH_ROWS, ERROR_COLUMN, Connector
from connectors.files import is_local, list_files, open_file

_TRUE = {"true", "t", "yes", "y", "1"}
_FALSE = {"false", "f", "no", "n", "0"}
MIN_SHARE = 0.5
"""A column is typed when at least this share of its non-empty cells parse."""


class CsvOptions(BaseModel):
    model_config = ConfigDict(extra="forbid")
    path: str = Field(min_length=1)
    delimiter: str = Field(default=",", min_length=1, max_length=1)
    null_values: list[str] = Field(default_factory=lambda: ["", "NULL", "null", "NA", "N/A"])


@connectors.register("csv")
class CsvConnector(Connector):
    Options = CsvOptions

    def splits(self) -> list[str]:
        return list_files(self.options.path, (".csv", ".tsv", ".txt", ".csv.gz"))

    def read_split(
        self, split: str, columns: Sequence[str] | None = None
    ) -> Iterator[pa.RecordBatch]:
        parse = pcsv.ParseOptions(delimiter=self.options.delimiter)
        names = _header(split, parse)
        wanted = [c for c in names if c in columns] if columns else names
        with _open(split) as handle:
            raw = pcsv.read_csv(
                handle,
                parse_options=parse,
                convert_options=pcsv.ConvertOptions(
                    column_types=dict.fromkeys(names, pa.string()),
                    include_columns=wanted,
                    null_values=self.options.null_values,
                    strings_can_be_null=True,
                ),
            )
        # Only the wanted columns are typed, so a bad cell elsewhere marks no row.
        table, errors = infer_types(raw.select(wanted))
        if errors is not None:
            table = table.append_column(ERROR_COLUMN, errors)
        yield from table.to_batches(max_chunksize=BATCH_ROWS)


def _open(path: str):
    """The file's text bytes: local ``.gz`` files are decompressed here; Beam's filesystems
    already decompress by extension."""
    handle = open_file(path)
    gzipped = path.endswith(".gz") and is_local(path)
    return pa.CompressedInputStream(handle, "gzip") if gzipped else handle


def _header(path: str, parse: pcsv.ParseOptions) -> list[str]:
    """The column names, from the first block only (not a second read of the whole file)."""
    with _open(path) as handle:
        return pcsv.open_csv(
            handle, read_options=pcsv.ReadOptions(block_size=1 << 16), parse_options=parse
        ).schema.names


def infer_types(table: pa.Table) -> tuple[pa.Table, pa.Array | None]:
    """Types each string column; returns the table and per-row error text (None if clean)."""
    errors = np.full(table.num_rows, None, dtype=object)
    columns = {}
    for name in table.column_names:
        values = table.column(name).combine_chunks()
        typed, bad = _type_column(values)
        columns[name] = typed
        if bad is not None and bad.any():
            for i in np.flatnonzero(bad):
                if errors[i] is None:
                    errors[i] = f"column {name!r}: {values[int(i)].as_py()!r} is not a {typed.type}"
    out = pa.table(columns)
    has_errors = any(e is not None for e in errors)
    return out, (pa.array(errors, pa.string()) if has_errors else None)


def _type_column(values: pa.Array) -> tuple[pa.Array, np.ndarray | None]:
    present = pc.is_valid(values).to_numpy(zero_copy_only=False)
    n = int(present.sum())
    if n == 0:
        return values, None
    text = values.to_pandas()
    lowered = text.str.strip().str.lower()
    bools = lowered.isin(_TRUE | _FALSE)
    # A column of only 0 and 1 is a number (a count, a quantity), as pandas and DuckDB read it.
    if bools[present].all() and not lowered[present].isin({"0", "1"}).all():
        truth = lowered.isin(_TRUE).to_numpy()
        return pa.array(truth, pa.bool_(), mask=~present), None  # empty cells stay null
    if text[present].str.match(r"^\s*[+-]?0\d").any():
        return values, None  # zero-padded codes (ids, zip codes) stay text
    numbers = pd.to_numeric(text, errors="coerce")
    parsed = numbers.notna().to_numpy() & present
    if parsed.sum() >= MIN_SHARE * n:
        bad = present & ~parsed
        if not text[parsed].str.contains(r"[.eEnN]").any():  # integers as written
            try:
                return _integers(values, parsed), bad
            except pa.ArrowInvalid:
                pass  # beyond int64: floats
        floats = numbers.astype("float64").where(parsed)
        return pa.array(floats, pa.float64(), from_pandas=True), bad
    times = pd.to_datetime(text, errors="coerce", utc=True, format="ISO8601")
    parsed = times.notna().to_numpy() & present
    if parsed.sum() >= MIN_SHARE * n:
        arr = pa.array(times, pa.timestamp("us", tz="UTC"), from_pandas=True)
        return arr, present & ~parsed
    return values, None


def _integers(values: pa.Array, parsed: np.ndarray) -> pa.Array:
    """Integer cells parsed from their text: exact beyond 2**53, where floats are not."""
    text = pc.if_else(pa.array(parsed), values, pa.scalar(None, pa.string()))
    text = pc.replace_substring_regex(pc.utf8_trim_whitespace(text), r"^\+", "")
    return pc.cast(text, pa.int64())
