"""Filters on the candidate's own columns: ``exclude_values`` and ``geographic``."""

from __future__ import annotations

from typing import Any

import pyarrow as pa
import pyarrow.compute as pc
from pydantic import BaseModel, ConfigDict, Field, model_validator

from ceap.plugins import filters
from transforms.filters.base import Filter, Verdict, column, value_set


def _is_in(values: pa.Array, items: list[Any]) -> pa.Array:
    """``values`` is one of ``items`` (in the column's type: ``[1, 2]`` matches text ids)."""
    column, wanted = value_set(values, items)
    return pc.is_in(column, value_set=wanted)


class ExcludeValuesOptions(BaseModel):
    model_config = ConfigDict(extra="forbid")
    column: str
    values: list[Any] = Field(min_length=1)
    reason: str | None = None


@filters.register("exclude_values")
class ExcludeValuesFilter(Filter):
    """Removes rows whose ``column`` is one of ``values`` (a null is not a value: kept)."""

    sees_removed_rows = True  # row by row

    Options = ExcludeValuesOptions

    def reads(self) -> set[str]:
        return {self.options.column}

    def evaluate(self, batch: pa.RecordBatch) -> Verdict:
        values = column(batch, self.options.column, self.type_name)
        hit = _is_in(values, self.options.values)
        reason = self.options.reason or f"{self.options.column} is an excluded value"
        return Verdict(pc.invert(hit), reason)


class GeographicOptions(BaseModel):
    model_config = ConfigDict(extra="forbid")
    column: str = "region"
    """The customer's location column (usually enriched from the customers table)."""
    allow: list[str] | None = None
    """Keep only these locations."""
    deny: list[str] | None = None
    """Remove these locations."""
    match_column: str | None = None
    """Keep only rows whose ``column`` equals this column (e.g. the event's region)."""

    @model_validator(mode="after")
    def _something(self) -> GeographicOptions:
        if not (self.allow or self.deny or self.match_column):
            raise ValueError("geographic needs at least one of allow, deny, match_column")
        return self


@filters.register("geographic")
class GeographicFilter(Filter):
    """Targets locations; a row whose location is unknown (null) cannot be targeted: removed."""

    sees_removed_rows = True  # row by row

    Options = GeographicOptions

    def reads(self) -> set[str]:
        return {c for c in (self.options.column, self.options.match_column) if c}

    def evaluate(self, batch: pa.RecordBatch) -> Verdict:
        o = self.options
        where = column(batch, o.column, self.type_name)
        n = batch.num_rows
        reasons = pa.array([None] * n, pa.string())
        keep = pa.array([True] * n)

        def apply(mask: pa.Array, why: str) -> None:
            nonlocal keep, reasons
            mask = pc.fill_null(mask, False)
            fresh = pc.and_(keep, pc.invert(mask))
            reasons = pc.if_else(fresh, pa.scalar(why), reasons)
            keep = pc.and_(keep, mask)

        apply(pc.is_valid(where), f"{o.column} unknown")
        if o.allow:
            apply(
                _is_in(where, o.allow),
                f"{o.column} not in target regions",
            )
        if o.deny:
            apply(
                pc.invert(_is_in(where, o.deny)),
                f"{o.column} is a denied region",
            )
        if o.match_column:
            other = column(batch, o.match_column, self.type_name)
            apply(pc.equal(where, other), f"{o.column} differs from {o.match_column}")
        return Verdict(keep, reasons)
