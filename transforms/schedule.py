"""When an outbox row is due: ``event_time + delay``, moved to the next ``send_at`` wall-clock
time in the customer's time zone (the ``timezone`` column; UTC when missing or unknown)."""

from __future__ import annotations

from datetime import timedelta
from zoneinfo import available_timezones

import pandas as pd
import pyarrow as pa

from ceap.arrow import UTC_US

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
