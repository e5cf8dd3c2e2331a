"""When an outbox row is due: ``event_time + delay``, moved to the next ``send_at`` wall-clock
time in the customer's time zone (the ``timezone`` column; UTC when missing or unknown)."""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any, NamedTuple
from zoneinfo import available_timezones

import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc

from ceap.arrow import UTC_US, to_utc

_ZONES = available_timezones()


def due_times(
    event_time: pa.Array, delay: timedelta, send_at: str | None, tz: pa.Array | None
) -> pa.Array:
    base = pd.Series(event_time.to_pandas()) + pd.Timedelta(delay)
    if send_at is None:
        return pa.array(base, UTC_US, from_pandas=True)
    hours, minutes = (int(x) for x in send_at.split(":"))
    at = pd.Timedelta(hours=hours, minutes=minutes)
    zones = pd.Series(tz.to_pandas() if tz is not None else [None] * len(base), dtype=object)
    zones = zones.where(zones.isin(_ZONES), "UTC")
    out = pd.Series(pd.NaT, index=base.index, dtype="datetime64[us, UTC]")
    for zone, idx in zones.groupby(zones).groups.items():
        local = base.loc[idx].dt.tz_convert(zone)
        wall = local.dt.tz_localize(None)
        target = wall.dt.normalize() + at
        target = target.where(target >= wall, target + pd.Timedelta(days=1))
        aware = target.dt.tz_localize(zone, ambiguous=True, nonexistent="shift_forward")
        out.loc[idx] = aware.dt.tz_convert("UTC")
    return pa.array(out, UTC_US, from_pandas=True)


class StepTimes(NamedTuple):
    """When a journey step's rows are due, and which cannot be (their reason)."""

    due: pa.Array
    problems: pa.Array  # text per row; null where the row can be scheduled


def step_times(batch: pa.RecordBatch, step: Any, tz: pa.Array | None, now: datetime) -> StepTimes:
    """A step's due times (DESIGN §9): ``event_time + delay``, or the time in its ``at``
    column plus ``offset``; then ``send_at`` in the customer's zone. An ``at`` time missing
    or already past when the row is made is a problem (``too late``): never sent late."""
    if step.at is None:
        due = due_times(batch.column("event_time"), step.delay, step.send_at, tz)
        return StepTimes(due, pa.nulls(len(due), pa.string()))
    names = batch.schema.names
    column = batch.column(step.at.column) if step.at.column in names else pa.nulls(len(batch))
    times, _ = to_utc(column)
    base = pc.add(times, pa.scalar(step.at.offset, pa.duration("us")))
    due = due_times(base, timedelta(0), step.send_at, tz)
    moment = pa.scalar(now.replace(tzinfo=None), pa.timestamp("us")).cast(UTC_US)
    late = pc.fill_null(pc.less(due, moment), False)
    missing = pc.is_null(due)
    none = pa.scalar(None, pa.string())
    problems = pc.if_else(
        missing,
        pa.scalar(f"no {step.at.column} on the candidate", pa.string()),
        pc.if_else(late, pa.scalar("too late", pa.string()), none),
    )
    return StepTimes(due, problems)  # a value that does not parse counts as missing
