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
from connectors.files import list_files, open_file

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
        with open_file(split) as handle:
            raw = pcsv.read_csv(
                handle,
                parse_options=pcsv.ParseOptions(delimiter=self.options.delimiter),
                convert_options=pcsv.ConvertOptions(
                    column_types=_all_strings(split, self.options.delimiter),
                    null_values=self.options.null_values,
                    strings_can_be_null=True,
                ),
            )
        table, errors = infer_types(raw)
        if columns:
            table = table.select([c for c in table.column_names if c in columns])
        if errors is not None:
            table = table.append_column(ERROR_COLUMN, errors)
        yield from table.to_batches(max_chunksize=BATCH_ROWS)


def _all_strings(path: str, delimiter: str) -> dict[str, pa.DataType]:
    with open_file(path) as handle:
        header = pcsv.read_csv(
            handle,
            read_options=pcsv.ReadOptions(block_size=1 << 16),
            parse_options=pcsv.ParseOptions(delimiter=delimiter),
            convert_options=pcsv.ConvertOptions(include_columns=None),
        ).column_names
    return dict.fromkeys(header, pa.string())


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
    if bools[present].all():
        return pa.array(
            lowered.map(lambda v: v in _TRUE if v is not None else None), pa.bool_()
        ), None
    if text[present].str.match(r"^\s*[+-]?0\d").any():
        return values, None  # zero-padded codes (ids, zip codes) stay text
    numbers = pd.to_numeric(text, errors="coerce")
    parsed = numbers.notna().to_numpy() & present
    if parsed.sum() >= MIN_SHARE * n:
        bad = present & ~parsed
        all_int = (numbers[parsed] == np.floor(numbers[parsed])).all() and not text[
            parsed
        ].str.contains(r"[.eE]").any()
        arr = pa.array(numbers.where(parsed, None), pa.float64(), from_pandas=True)
        if all_int:
            arr = pc.cast(arr, pa.int64())
        return arr, bad
    times = pd.to_datetime(text, errors="coerce", utc=True, format="ISO8601")
    parsed = times.notna().to_numpy() & present
    if parsed.sum() >= MIN_SHARE * n:
        arr = pa.array(times, pa.timestamp("us", tz="UTC"), from_pandas=True)
        return arr, present & ~parsed
    return values, None
