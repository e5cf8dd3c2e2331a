"""``ApplyFilters``: the program's filters in order, one labelled step each
(``Filter[<name>]`` or ``Filter[<index>:<type>]``), counting every removal by reason."""

from __future__ import annotations

import apache_beam as beam
import pyarrow as pa
import pyarrow.compute as pc

from ceap.context import RunContext
from ceap.plugins import filters
from configs.schema import FilterConfig
from transforms.funnel import counter


class _FilterFn(beam.DoFn):
    def __init__(self, spec: FilterConfig, label: str, context: RunContext) -> None:
        self._spec = spec
        self._label = label
        self._ctx = context

    def setup(self) -> None:
        self._filter = filters.get(self._spec.type)(self._spec.options, self._ctx)
        self._filter.setup()

    def process(self, batch: pa.RecordBatch):
        kept, removed, reasons = self._filter.split(batch)
        if removed.num_rows:
            counts = pc.value_counts(pc.fill_null(reasons, "removed"))
            for item in counts.to_pylist():
                counter(self._ctx.program, "filtered", self._label, item["values"]).inc(
                    item["counts"]
                )
        if kept.num_rows:
            yield kept


class ApplyFilters(beam.PTransform):
    def __init__(self, specs: list[FilterConfig], labels: list[str], context: RunContext) -> None:
        super().__init__()
        self._specs = specs
        self._labels = labels
        self._ctx = context

    def expand(self, candidates):
        for spec, label in zip(self._specs, self._labels, strict=True):
            candidates = candidates | f"Filter[{label}]" >> beam.ParDo(
                _FilterFn(spec, label, self._ctx)
            )
        return candidates
