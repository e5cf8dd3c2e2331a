"""The filter contract (product-mixer style): given a batch, say which rows stay and why
the others go. Filters never count or log; ``ApplyFilters`` counts kept and removed.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, ClassVar

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
from pydantic import BaseModel, ConfigDict

from ceap.context import RunContext

REMOVED = "_ceap_removed"
"""Batch runs, on the way into a filter chain: True where a row was already removed (an
earlier filter's removals, or ToCandidates' dead letters), to be dropped with the chain's
next copy instead of a copy of its own."""


class FilterOptions(BaseModel):
    model_config = ConfigDict(extra="forbid")


@dataclass
class Verdict:
    """``keep``: one bool per row (nulls count as *remove*, as SQL's WHERE does).
    ``reason``: why removed rows go, one string for all, or an array aligned with rows.
    """

    keep: pa.Array | np.ndarray
    reason: str | pa.Array


class Filter:
    """Base of every filter.

    Args:
      options: the subclass's validated ``Options``.
      context: the run (program, reference time, store) for filters that look things up.
    """

    type_name: ClassVar[str] = ""
    Options: ClassVar[type[BaseModel]] = FilterOptions
    sees_removed_rows: ClassVar[bool] = False
    """True when ``decide`` may be given rows an earlier filter removed, because each row's
    verdict depends on that row alone. Batch runs then drop a chain's removed rows once
    instead of copying the kept rows after every filter (a verdict that fails is decided
    again without them). A filter that leaves this False only ever sees rows still in."""

    def __init__(self, options: BaseModel | dict | None, context: RunContext) -> None:
        if not isinstance(options, BaseModel):
            options = self.Options.model_validate(options or {})
        self.options = options
        self.context = context

    def setup(self) -> None:
        """Loads lookups once per worker (store snapshots, tables). Default: nothing."""

    def evaluate(self, batch: pa.RecordBatch) -> Verdict:
        raise NotImplementedError

    def reads(self) -> set[str] | None:
        """The candidate columns this filter reads, or None when unknown. A filter that
        reads no enriched column may run before enrichment (an optimisation only: the
        funnel is the same, since enrichment never removes rows)."""
        return None

    def decide(self, batch: pa.RecordBatch) -> tuple[np.ndarray, str | pa.Array]:
        """(keep: one bool per row, nulls as False; the reason: one string, or an array
        aligned with the rows). No row is copied: a batch run only counts removals."""
        verdict = self.evaluate(batch)
        keep = verdict.keep
        if isinstance(keep, pa.Array | pa.ChunkedArray):
            keep = pc.fill_null(keep, False).to_numpy(zero_copy_only=False)
        return np.asarray(keep, dtype=bool), verdict.reason

    def split(self, batch: pa.RecordBatch) -> tuple[pa.RecordBatch, pa.RecordBatch, pa.Array]:
        """Returns (kept rows, removed rows, the removed rows' reasons)."""
        keep, reason = self.decide(batch)
        drop = ~keep
        removed = batch.filter(pa.array(drop))
        return batch.filter(pa.array(keep)), removed, reasons_of(reason, drop)


def reasons_of(reason: str | pa.Array, drop: np.ndarray) -> pa.Array:
    """The reasons of the removed rows (``drop``), one per removed row."""
    if isinstance(reason, str) or reason is None:
        return pa.repeat(pa.scalar(reason, pa.string()), int(drop.sum()))
    return reason.filter(pa.array(drop))


def column(batch: pa.RecordBatch, name: str, filter_label: str) -> pa.Array:
    """A column the filter needs, with an error that names the filter and the column."""
    if name not in batch.schema.names:
        from ceap.errors import ConfigError

        raise ConfigError(
            f"filter {filter_label}: column {name!r} is not on the candidate; "
            f"available: {', '.join(batch.schema.names)}"
        )
    return batch.column(name)


def value_set(values: pa.Array, items: list[Any]) -> tuple[pa.Array, pa.Array]:
    """A config's list of values in the type of the column it is compared with, so ``[1, 2]``
    matches a text column and ``['7']`` an integer one. Returns (column, values): an integer
    column meets fractional values as float64. Values that cannot be of the column's type
    cannot match and are dropped."""
    kind = values.type.value_type if pa.types.is_dictionary(values.type) else values.type
    if pa.types.is_string(kind) or pa.types.is_large_string(kind):
        return values, pa.array([v if v is None else str(v) for v in items], kind)
    numbers = [v for v in items if isinstance(v, int | float) and not isinstance(v, bool)]
    if pa.types.is_integer(kind) and any(
        isinstance(v, float) and not v.is_integer() for v in numbers
    ):
        values, kind, items = pc.cast(values, pa.float64()), pa.float64(), numbers
    kept = []
    for v in items:
        try:
            kept.append(pc.cast(pa.scalar(v), kind).as_py())
        except (pa.ArrowException, TypeError, ValueError):
            continue
    wanted = pa.array(kept, kind)
    if pa.types.is_floating(values.type):  # hashing tells -0.0 from 0.0; `==` does not
        values, wanted = pc.add(values, 0.0), pc.add(wanted, 0.0)
    return values, wanted
