"""``ToCandidates``: source rows (or streaming events) become candidate rows.

The program's ``fields:`` name the columns that hold the customer, the subject and the
event time; those are validated here, vectorised, and rows that fail (missing key, wrong
type, unparsable time, a cell the connector could not read) leave on the dead-letter
output with the reason. Every other source column rides along, so filters and scorers
may use it; ``context`` columns are picked at the sink, after enrichment.
"""

from __future__ import annotations

import zlib

import apache_beam as beam
import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from ceap import arrow
from ceap.context import RunContext
from ceap.errors import ConfigError
from ceap.progress import add_rows
from configs.schema import FieldsConfig
from connectors.base import ERROR_COLUMN, ORIGIN_COLUMN
from connectors.batch_coder import batches
from transforms.dead_letters import DEAD_LETTER, RAW, dead_letters
from transforms.filters.base import REMOVED
from transforms.funnel import counter

KEYS = ("customer_id", "subject_id")


class _ToCandidatesFn(beam.DoFn):
    def __init__(self, fields: FieldsConfig, context: RunContext, mark_bad: bool) -> None:
        self._fields = fields
        self._ctx = context
        self._mark_bad = mark_bad

    def process(self, batch: pa.RecordBatch):
        counter(self._ctx.program, "read").inc(batch.num_rows)
        add_rows(batch.num_rows)
        good, bad = to_candidates(batch, self._fields, self._ctx, self._mark_bad)
        if good.num_rows:
            yield good
        if bad is not None and bad.num_rows:
            counter(self._ctx.program, "dead_letter", "candidates").inc(bad.num_rows)
            yield beam.pvalue.TaggedOutput(DEAD_LETTER, bad)


class ToCandidates(beam.PTransform):
    """PCollection[RecordBatch] -> (candidates, dead letters), tagged ``DEAD_LETTER``.

    Args:
      mark_bad: a filter chain (``ApplyFilters``) takes the candidates next: bad rows are
        marked for it to drop rather than copied out here (batch runs).
    """

    def __init__(self, fields: FieldsConfig, context: RunContext, mark_bad: bool = False) -> None:
        super().__init__()
        self._fields = fields
        self._ctx = context
        self._mark_bad = mark_bad

    def expand(self, rows):
        return rows | "Validate" >> batches(
            beam.ParDo(_ToCandidatesFn(self._fields, self._ctx, self._mark_bad))
        ).with_outputs(DEAD_LETTER, main="candidates")


def to_candidates(
    batch: pa.RecordBatch, fields: FieldsConfig, ctx: RunContext, mark_bad: bool = False
) -> tuple[pa.RecordBatch, pa.Table | None]:
    """Returns (valid candidate rows, dead-letter records or None). ``mark_bad``: the bad
    rows stay, marked ``REMOVED``, for the filter chain that comes next to drop with its
    own copy (unless every row is bad)."""
    names = batch.schema.names
    n = batch.num_rows
    bad_mask = np.zeros(n, dtype=bool)
    reasons = np.empty(0, dtype=object)  # one per row once a row fails (most batches: none)

    def fail(mask: np.ndarray, why: str | np.ndarray) -> None:
        nonlocal reasons
        fresh = mask & ~bad_mask
        if not fresh.any():
            return
        if not len(reasons):
            reasons = np.full(n, None, dtype=object)
        reasons[fresh] = why if isinstance(why, str) else why[fresh]
        bad_mask[fresh] = True

    if ERROR_COLUMN in names:
        errs = batch.column(ERROR_COLUMN).to_numpy(zero_copy_only=False)
        fail(np.not_equal(errs, None), errs)

    out: dict[str, pa.Array] = {}
    for key in KEYS:
        source = getattr(fields, key)
        values = _column(batch, source, key, ctx.mode.schemaless)
        if pa.types.is_floating(values.type):
            # pandas writes integer ids with nulls as float64: 42.0 is the id "42", 4.2 is bad.
            integral = pc.fill_null(pc.equal(values, pc.floor(values)), True).to_numpy(
                zero_copy_only=False
            )
            fail(~integral, f"{key} column {source!r}: not a whole number")
            values = pc.cast(pc.if_else(pa.array(integral), values, None), pa.int64())
        if not arrow.is_key_type(values.type):
            fail(
                np.ones(n, bool),
                f"{key} column {source!r} has type {values.type}; expected text or integer",
            )
            values = pa.nulls(n, pa.string())
        else:
            values = arrow.as_text(values)
            values = arrow.trim_whitespace(values)
            missing = pc.fill_null(pc.equal(values, ""), True).to_numpy(zero_copy_only=False)
            fail(missing, f"missing {key} (column {source!r})")
        out[key] = values

    if fields.event_time:
        raw = _column(batch, fields.event_time, "event_time", ctx.mode.schemaless)
        times, ok = arrow.to_utc(raw)
        fail(
            ~ok.to_numpy(zero_copy_only=False),
            f"event_time column {fields.event_time!r}: not a time",
        )
        fail(
            pc.is_null(raw).to_numpy(zero_copy_only=False),
            f"missing event_time (column {fields.event_time!r})",
        )
        out["event_time"] = times
    else:
        out["event_time"] = pa.array(
            np.full(n, np.datetime64(ctx.current().replace(tzinfo=None), "us")), arrow.UTC_US
        )

    split = (batch.schema.metadata or {}).get(b"ceap.split", b"").decode()
    rest = {c: batch.column(c) for c in names if c not in out and c not in (ERROR_COLUMN, RAW)}
    if ORIGIN_COLUMN in rest and not ctx.mode.records_outcomes:
        rest[ORIGIN_COLUMN] = row_ids(split, rest[ORIGIN_COLUMN])
    table = pa.RecordBatch.from_pydict({**out, **rest})
    if not bad_mask.any():
        return table, None
    keep = pa.array(~bad_mask)
    bad_rows = batch.filter(pa.array(bad_mask))
    rows = (
        bad_rows.column(ORIGIN_COLUMN).to_pylist()
        if ORIGIN_COLUMN in names
        else [None] * bad_rows.num_rows
    )
    origins = [f"{split}#{r}" for r in rows]
    letters = dead_letters(
        ctx.program, "candidates", bad_rows, list(reasons[bad_mask]), origins, ctx.current()
    )
    if mark_bad and not bad_mask.all():
        return table.append_column(REMOVED, pa.array(bad_mask)), letters
    return table.filter(keep), letters


def row_ids(split: str, positions: pa.Array) -> pa.Array:
    """Batch runs: each row's position in its split, made unique across splits (a 31-bit
    hash of the split's label in the high bits), so a later stage's dead letter of that row
    is keyed apart from another row of the same candidate key, and the same on a re-run.
    Streaming runs keep the event's log position instead."""
    high = (zlib.crc32(split.encode()) & 0x7FFFFFFF) << 32
    return pc.add(pc.cast(positions, pa.int64()), pa.scalar(high, pa.int64()))


def row_origin(row_id: int) -> str:
    """A row id as dead-letter origin text: the split's hash and the row's position in it."""
    return f"split {row_id >> 32:08x} row {row_id & 0xFFFFFFFF}"


def _column(batch: pa.RecordBatch, name: str, role: str, schemaless: bool = False) -> pa.Array:
    if name not in batch.schema.names and schemaless:
        return pa.nulls(batch.num_rows, pa.string())  # an event without the field: a bad event
    if name not in batch.schema.names:
        visible = [c for c in batch.schema.names if not c.startswith("_ceap_")]
        raise ConfigError(
            f"fields.{role}: the source has no column {name!r}; its columns are: {', '.join(visible)}"
        )
    return batch.column(name)
