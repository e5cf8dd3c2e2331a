"""``csv``: delimited text files with a header row (local or any Beam filesystem URI).

Column types are inferred over the whole file, as a person reading it would: a column
whose values are numbers (or booleans, or ISO times) becomes that type, and a cell that
does not parse becomes null with the row marked for the dead-letter sink, instead of
turning the whole column into text or failing the file. Columns the program keys or joins
on (``text_columns``: customer and subject ids, join columns) are never typed: an id keeps
its text exactly as written (``1E5``, ``0012``, ``12.50``).

A line whose field count differs from the header's does not fail the file: it is kept in
its place as a row of nulls marked for the dead-letter sink, with its line number and its
text (``RAW``), and every other line is read as usual.
"""

from __future__ import annotations

from collections.abc import Collection, Iterator, Sequence
from typing import NamedTuple
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv as pcsv
from pydantic import BaseModel, ConfigDict, Field, field_validator

from ceap.arrow import parse_times
from ceap.file_fields import file_field
from ceap.plugins import connectors
from connectors.base import BATCH_ROWS, ERROR_COLUMN, RAW, Connector
from connectors.files import is_local, list_files, open_file

_TRUE = {"true", "t", "yes", "y", "1"}
_FALSE = {"false", "f", "no", "n", "0"}
MIN_SHARE = 0.5
"""A column is typed when at least this share of its non-empty cells parse."""
RAW_CHARS = 2000
"""How much of a ragged line's text its dead letter keeps."""


class CsvOptions(BaseModel):
    model_config = ConfigDict(extra="forbid")
    path: str = file_field(min_length=1)
    delimiter: str = Field(default=",", min_length=1, max_length=1)
    null_values: list[str] = Field(default_factory=lambda: ["", "NULL", "null", "NA", "N/A"])
    timezone: str = "UTC"
    """The zone of times written without an offset (``2026-12-01 10:00``); times with one
    (``Z``, ``-08:00``) keep theirs, whatever their neighbours say."""

    @field_validator("timezone")
    @classmethod
    def _zone(cls, value: str) -> str:
        try:
            ZoneInfo(value)
        except (ZoneInfoNotFoundError, ValueError):
            raise ValueError(
                f"unknown time zone {value!r}; expected e.g. UTC, Europe/Paris"
            ) from None
        return value


@connectors.register("csv")
class CsvConnector(Connector):
    Options = CsvOptions

    def splits(self) -> list[str]:
        return list_files(self.options.path, (".csv", ".tsv", ".txt", ".csv.gz"))

    def read_split(
        self,
        split: str,
        columns: Sequence[str] | None = None,
        *,
        text_columns: Collection[str] = (),
    ) -> Iterator[pa.RecordBatch]:
        names = _header(split, self._parse(lambda row: "skip"))
        wanted = [c for c in names if c in columns] if columns else names
        raw, ragged = self._read(split, names, wanted, threads=True)
        if any(r.line is None for r in ragged):
            # Line numbers are only known to a serial parse: read the file again, serially,
            # only when it has ragged lines (the common clean file keeps the threaded read).
            raw, ragged = self._read(split, names, wanted, threads=False)
        raw, not_utf8 = _decode(raw.select(wanted))
        # Only the wanted columns are typed, so a bad cell elsewhere marks no row.
        table, errors = infer_types(raw, text=set(text_columns), timezone=self.options.timezone)
        errors = _first(not_utf8, errors)
        if ragged:
            table, errors, lines = _insert_ragged(table, errors, ragged)
            table = table.append_column(ERROR_COLUMN, errors).append_column(RAW, lines)
        elif errors is not None:
            table = table.append_column(ERROR_COLUMN, errors)
        yield from table.to_batches(max_chunksize=BATCH_ROWS)

    def column_names(self) -> list[str]:
        """Every file's header (files may differ); the first block of each only."""
        names: dict[str, None] = {}
        for path in self.splits():
            names.update(dict.fromkeys(_header(path, self._parse(lambda row: "skip"))))
        return list(names)

    def _parse(self, on_invalid=None) -> pcsv.ParseOptions:
        return pcsv.ParseOptions(delimiter=self.options.delimiter, invalid_row_handler=on_invalid)

    def _read(
        self, split: str, names: list[str], wanted: list[str], threads: bool
    ) -> tuple[pa.Table, list[_Ragged]]:
        """The file's well-formed lines as text columns, and its ragged lines in order."""
        ragged: list[_Ragged] = []

        def skip(row) -> str:
            ragged.append(_Ragged(row.number, row.text, row.expected_columns, row.actual_columns))
            return "skip"

        with _open(split) as handle:
            raw = pcsv.read_csv(
                handle,
                read_options=pcsv.ReadOptions(use_threads=threads),
                parse_options=self._parse(skip),
                convert_options=pcsv.ConvertOptions(
                    # bytes, decoded per cell after (_decode): one byte that is not UTF-8
                    # costs its row, not the file
                    column_types=dict.fromkeys(names, pa.binary()),
                    include_columns=wanted,
                    null_values=self.options.null_values,
                    strings_can_be_null=True,
                ),
            )
        return raw, sorted(ragged, key=lambda r: r.line or 0)


class _Ragged(NamedTuple):
    """A line pyarrow skipped: its number (the header is line 1; counted as records, so a
    blank line or a quoted line break before it is not counted), text and field counts."""

    line: int | None
    text: str
    expected: int
    got: int


def _insert_ragged(
    table: pa.Table, errors: pa.Array | None, ragged: list[_Ragged]
) -> tuple[pa.Table, pa.Array, pa.Array]:
    """Puts each ragged line back where it was in the file, as a row of nulls whose error
    names the line and whose ``RAW`` text is the line; returns (table, errors, raw text)."""
    n, k = table.num_rows, len(ragged)
    at = np.array([(r.line or 0) - 2 for r in ragged], dtype=np.int64)  # line 2: row 0
    if len(np.unique(at)) != k or at.min() < 0 or at.max() >= n + k:
        at = np.arange(n, n + k)  # numbers unknown or inconsistent: after the file's rows
    is_ragged = np.zeros(n + k, dtype=bool)
    is_ragged[at] = True
    order = np.empty(n + k, dtype=np.int64)
    order[~is_ragged] = np.arange(n)
    order[is_ragged] = np.arange(n, n + k)
    take = pa.array(order)
    columns = {
        name: pa.concat_arrays([col.combine_chunks(), pa.nulls(k, col.type)]).take(take)
        for name, col in zip(table.column_names, table.columns, strict=True)
    }
    reasons = np.full(n + k, None, dtype=object)
    if errors is not None:
        reasons[~is_ragged] = errors.to_numpy(zero_copy_only=False)
    reasons[at] = [
        f"line {r.line if r.line is not None else '?'}: expected {r.expected} columns, got {r.got}"
        for r in ragged
    ]
    lines = np.full(n + k, None, dtype=object)
    lines[at] = [r.text[:RAW_CHARS] for r in ragged]
    # No wanted column in the file: still n + k rows (each one's error reaches a dead letter).
    out = pa.table(columns) if columns else pa.table({"_": pa.nulls(n + k)}).drop_columns("_")
    return out, pa.array(reasons, pa.string()), pa.array(lines, pa.string())


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


def _decode(raw: pa.Table) -> tuple[pa.Table, pa.Array | None]:
    """Binary columns as UTF-8 text. A cell that is not UTF-8 (a Latin-1 ``é`` in an export)
    becomes null and its row carries the reason; the common clean column is one cast."""
    errors: np.ndarray | None = None
    columns = {}
    for name in raw.column_names:
        values = raw.column(name).combine_chunks()
        try:
            columns[name] = values.cast(pa.string())
            continue
        except pa.ArrowInvalid:
            pass
        cells: list[str | None] = []
        for i, cell in enumerate(values.to_pylist()):
            try:
                cells.append(None if cell is None else cell.decode("utf-8"))
            except UnicodeDecodeError:
                cells.append(None)
                errors = np.full(len(values), None, dtype=object) if errors is None else errors
                errors[i] = errors[i] or f"column {name!r}: not valid UTF-8: {cell[:80]!r}"
        columns[name] = pa.array(cells, pa.string())
    table = pa.table(columns) if columns else raw
    return table, (None if errors is None else pa.array(errors, pa.string()))


def _first(*errors: pa.Array | None) -> pa.Array | None:
    """Per row, the first reason any of ``errors`` gives (None when none has one)."""
    present = [e for e in errors if e is not None]
    if len(present) <= 1:
        return present[0] if present else None
    return pc.coalesce(*present)


def infer_types(
    table: pa.Table, text: Collection[str] = (), timezone: str = "UTC"
) -> tuple[pa.Table, pa.Array | None]:
    """Types each string column but those in ``text`` (kept as written); returns the table
    and per-row error text (None if clean). Times without an offset are in ``timezone``."""
    errors = np.full(table.num_rows, None, dtype=object)
    columns = {}
    for name in table.column_names:
        values = table.column(name).combine_chunks()
        typed, bad = (values, None) if name in text else _type_column(values, timezone)
        columns[name] = typed
        if bad is not None and bad.any():
            for i in np.flatnonzero(bad):
                if errors[i] is None:
                    errors[i] = f"column {name!r}: {values[int(i)].as_py()!r} is not a {typed.type}"
    out = pa.table(columns)
    has_errors = any(e is not None for e in errors)
    return out, (pa.array(errors, pa.string()) if has_errors else None)


def _type_column(values: pa.Array, timezone: str = "UTC") -> tuple[pa.Array, np.ndarray | None]:
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
    times = parse_times(text, timezone)
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
