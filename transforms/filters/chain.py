"""``ApplyFilters``: the program's filters in order, one labelled step each
(``Filter[<name>]`` or ``Filter[<index>:<type>]``), counting every removal by reason.

In streaming runs the filters also refresh what they looked up (opt-outs, live keys,
contacts) every ``refresh_seconds`` of the mode, so an opt-out made through the API is honoured by the
running stream, and removed events are recorded in the outcome ledger.

In batch runs a filter's removals are marked (``REMOVED``) rather than copied out; the
chain's last filter, a quarter of the batch marked, or a filter that must not see removed
rows (``Filter.sees_removed_rows`` False, plugins by default) drops them at once. Copying
the kept rows after each filter was the filters' largest cost.
"""

from __future__ import annotations

import logging
import time
from typing import NamedTuple

import apache_beam as beam
import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from ceap.context import RunContext
from ceap.plugins import filters
from configs.schema import FilterConfig
from connectors.batch_coder import batches
from transforms.filters.base import REMOVED, reasons_of
from transforms.funnel import counter
from transforms.outcomes import OUTCOME, emit_outcomes


class FilterOutputs(NamedTuple):
    kept: beam.PCollection
    outcomes: list[beam.PCollection]
    """One per filter, never flattened: the FnApiRunner materialises a Flatten's inputs
    until their (in streaming, endless) stage ends, which held outcomes back."""


log = logging.getLogger(__name__)

DROP_SHARE = 0.25
"""Marked rows are dropped once they are this share of a batch (later filters would look
at them for nothing)."""


class _FilterFn(beam.DoFn):
    def __init__(self, spec: FilterConfig, label: str, context: RunContext, last: bool) -> None:
        self._spec = spec
        self._label = label
        self._ctx = context
        self._last = last

    def setup(self) -> None:
        self._filter = filters.get(self._spec.type)(self._spec.options, self._ctx)
        self._filter.setup()
        self._loaded = time.monotonic()

    def start_bundle(self) -> None:
        self._refresh()

    def _refresh(self) -> None:
        if self._ctx.mode.stale(self._loaded):
            self._filter.setup()
            self._loaded = time.monotonic()

    def process(self, batch: pa.RecordBatch):
        self._refresh()  # a streaming bundle lasts as long as the stream: refresh within it
        batch, marked, keep, reason = self._decide(*_unmark(batch))
        drop = ~keep if marked is None else ~keep & ~marked
        removed = int(drop.sum())
        if removed:
            self._count(reason, drop, removed)
            if self._ctx.mode.records_outcomes:  # streaming: one outcome per removed event
                reasons = pc.fill_null(reasons_of(reason, drop), "removed")
                labelled = pc.binary_join_element_wise(self._label, reasons, ": ")
                yield from emit_outcomes(
                    self._ctx, batch.filter(pa.array(drop)), "filtered", labelled
                )
        gone = drop if marked is None else drop | marked
        if gone.all():
            return
        lazy = not (self._last or self._ctx.mode.records_outcomes)
        if not gone.any():
            yield batch
        elif lazy and gone.mean() < DROP_SHARE:
            yield batch.append_column(REMOVED, pa.array(gone))
        else:
            yield batch.filter(pa.array(~gone))

    def _decide(self, batch: pa.RecordBatch, marked: np.ndarray | None):
        """(batch, marked, keep, reason): the verdict on the batch with its marked rows, when
        the filter may see them, else on the batch without them."""
        if marked is not None and self._filter.sees_removed_rows:
            try:
                return batch, marked, *self._filter.decide(batch)
            except Exception as exc:  # maybe a removed row's value (an unparsable flag)
                log.debug("filter %s: deciding again without removed rows: %s", self._label, exc)
        if marked is not None:
            batch, marked = batch.filter(pa.array(~marked)), None
        return batch, marked, *self._filter.decide(batch)

    def _count(self, reason: str | pa.Array, drop: np.ndarray, removed: int) -> None:
        if reason is None or isinstance(reason, str):
            counts = [(reason or "removed", removed)]
        else:
            values = pc.value_counts(pc.fill_null(reason.filter(pa.array(drop)), "removed"))
            counts = [(v["values"], v["counts"]) for v in values.to_pylist()]
        for why, n in counts:
            counter(self._ctx.program, "filtered", self._label, why).inc(n)


def _unmark(batch: pa.RecordBatch) -> tuple[pa.RecordBatch, np.ndarray | None]:
    """The batch without its ``REMOVED`` column, and that column (None without one)."""
    at = batch.schema.get_field_index(REMOVED)
    if at < 0:
        return batch, None
    return batch.remove_column(at), batch.column(at).to_numpy(zero_copy_only=False)


class ApplyFilters(beam.PTransform):
    """PCollection[RecordBatch] -> FilterOutputs(kept batches, each filter's outcome records)."""

    def __init__(self, specs: list[FilterConfig], labels: list[str], context: RunContext) -> None:
        super().__init__()
        self._specs = specs
        self._labels = labels
        self._ctx = context

    def expand(self, candidates) -> FilterOutputs:
        removed = []
        for i, (spec, label) in enumerate(zip(self._specs, self._labels, strict=True)):
            last = i == len(self._specs) - 1
            step = candidates | f"Filter[{label}]" >> batches(
                beam.ParDo(_FilterFn(spec, label, self._ctx, last))
            ).with_outputs(OUTCOME, main="kept")
            candidates = step.kept
            removed.append(step[OUTCOME])
        return FilterOutputs(candidates, removed)
