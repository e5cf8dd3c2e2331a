"""``DedupEvents``: drops repeated streaming events (at-least-once upstreams resend) and,
with ``events.max_lateness``, events that arrive too late to ask about.

An event's identity is ``fields.event_id`` when the program names one, else its customer,
subject and event time together. A repeat is an event whose identity was already
accounted for at *another* log position within ``events.dedup_window``: the outcome
ledger is the durable memory, so a restart forgets nothing, and a replay of the same
position (after a crash) is not a repeat but the same event, processed idempotently.
"""

from __future__ import annotations

from datetime import timedelta

import apache_beam as beam
import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from ceap import arrow
from ceap.context import RunContext
from configs.schema import FieldsConfig
from connectors.base import ORIGIN_COLUMN
from connectors.batch_coder import batches
from transforms.funnel import counter
from transforms.outcomes import IDENTITY_COLUMN, OUTCOME, emit_outcomes
from transforms.store_fn import StoreDoFn


def identities(batch: pa.RecordBatch, fields: FieldsConfig) -> pa.Array:
    if fields.event_id and fields.event_id in batch.schema.names:
        return arrow.as_text(batch.column(fields.event_id))
    times = pc.strftime(
        pc.cast(batch.column("event_time"), pa.timestamp("us", tz="UTC")),
        format="%Y-%m-%dT%H:%M:%S",
    )
    return pc.binary_join_element_wise(
        batch.column("customer_id"), batch.column("subject_id"), times, "|"
    )


class _DedupFn(StoreDoFn):
    def __init__(
        self,
        fields: FieldsConfig,
        window: timedelta,
        context: RunContext,
        max_lateness: timedelta | None,
    ) -> None:
        super().__init__(context)
        self._fields = fields
        self._window = window
        self._lateness = max_lateness

    def process(self, batch: pa.RecordBatch):
        if self._lateness is not None:
            cutoff = pa.scalar(RunContext.utcnow() - self._lateness, pa.timestamp("us", tz="UTC"))
            late = pc.fill_null(pc.less(batch.column("event_time"), cutoff), False)
            if pc.any(late).as_py():
                n = pc.sum(late).as_py()
                counter(self._ctx.program, "filtered", "events", "late event").inc(n)
                yield from emit_outcomes(
                    self._ctx, batch.filter(late), "filtered", "events: late event"
                )
                batch = batch.filter(pc.invert(late))
                if not batch.num_rows:
                    return
        keys = identities(batch, self._fields)
        batch = batch.append_column(IDENTITY_COLUMN, keys)
        values = keys.to_pylist()
        positions = batch.column(ORIGIN_COLUMN).to_numpy()
        since = RunContext.utcnow() - self._window
        seen = self._store.seen_events(self._ctx.program, list(set(values)), since)
        repeat = np.zeros(batch.num_rows, dtype=bool)
        first: dict[str, int] = {}
        for i, (key, pos) in enumerate(zip(values, positions, strict=True)):
            earlier = seen.get(key)
            if (earlier is not None and earlier != pos) or key in first:
                repeat[i] = True
            else:
                first[key] = pos
        if repeat.any():
            counter(self._ctx.program, "filtered", "events", "duplicate event").inc(
                int(repeat.sum())
            )
            yield from emit_outcomes(
                self._ctx, batch.filter(pa.array(repeat)), "duplicate", "events: duplicate event"
            )
        if not repeat.all():
            yield batch.filter(pa.array(~repeat)) if repeat.any() else batch


class DedupEvents(beam.PTransform):
    """PCollection[RecordBatch] -> (fresh events, outcome records) tagged ``OUTCOME``."""

    def __init__(
        self, fields: FieldsConfig, window: timedelta, context: RunContext,
        max_lateness: timedelta | None = None,
    ) -> None:  # fmt: skip
        super().__init__()
        self._fn = _DedupFn(fields, window, context, max_lateness)

    def expand(self, rows):
        drop = batches(beam.ParDo(self._fn))
        return rows | "Drop" >> drop.with_outputs(OUTCOME, main="fresh")
