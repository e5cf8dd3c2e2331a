"""``ApplyFilters``: the program's filters in order, one labelled step each
(``Filter[<name>]`` or ``Filter[<index>:<type>]``), counting every removal by reason.

In streaming runs the filters also refresh what they looked up (opt-outs, live keys,
contacts) every ``refresh_seconds`` of the mode, so an opt-out made through the API is honoured by the
running stream, and removed events are recorded in the outcome ledger.
"""

from __future__ import annotations

import time
from typing import NamedTuple

import apache_beam as beam
import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from ceap.batch_coder import batches
from ceap.context import RunContext
from ceap.plugins import filters
from configs.schema import FilterConfig
from transforms.filters.base import reasons_of
from transforms.funnel import counter
from transforms.outcomes import OUTCOME, emit_outcomes


class FilterOutputs(NamedTuple):
    kept: beam.PCollection
    outcomes: list[beam.PCollection]
    """One per filter, never flattened: the FnApiRunner materialises a Flatten's inputs
    until their (in streaming, endless) stage ends, which held outcomes back."""


class _FilterFn(beam.DoFn):
    def __init__(self, spec: FilterConfig, label: str, context: RunContext) -> None:
        self._spec = spec
        self._label = label
        self._ctx = context

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
        keep, reason = self._filter.decide(batch)
        drop = ~keep
        removed = int(drop.sum())
        if removed:
            self._count(reason, drop, removed)
            if self._ctx.mode.records_outcomes:  # streaming: one outcome per removed event
                reasons = pc.fill_null(reasons_of(reason, drop), "removed")
                labelled = pc.binary_join_element_wise(self._label, reasons, ": ")
                yield from emit_outcomes(
                    self._ctx, batch.filter(pa.array(drop)), "filtered", labelled
                )
        if removed < batch.num_rows:
            yield batch.filter(pa.array(keep)) if removed else batch

    def _count(self, reason: str | pa.Array, drop: np.ndarray, removed: int) -> None:
        if reason is None or isinstance(reason, str):
            counts = [(reason or "removed", removed)]
        else:
            values = pc.value_counts(pc.fill_null(reason.filter(pa.array(drop)), "removed"))
            counts = [(v["values"], v["counts"]) for v in values.to_pylist()]
        for why, n in counts:
            counter(self._ctx.program, "filtered", self._label, why).inc(n)


class ApplyFilters(beam.PTransform):
    """PCollection[RecordBatch] -> FilterOutputs(kept batches, each filter's outcome records)."""

    def __init__(self, specs: list[FilterConfig], labels: list[str], context: RunContext) -> None:
        super().__init__()
        self._specs = specs
        self._labels = labels
        self._ctx = context

    def expand(self, candidates) -> FilterOutputs:
        removed = []
        for spec, label in zip(self._specs, self._labels, strict=True):
            step = candidates | f"Filter[{label}]" >> batches(
                beam.ParDo(_FilterFn(spec, label, self._ctx))
            ).with_outputs(OUTCOME, main="kept")
            candidates = step.kept
            removed.append(step[OUTCOME])
        return FilterOutputs(candidates, removed)
