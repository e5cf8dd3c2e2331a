"""Send-time rules of the dispatcher: quiet hours in the customer's time zone and the global
frequency cap, each from the channel's options, else the environment, else a default.

    CEAP_QUIET_HOURS=21:00-08:00     # customer-local; "off" disables
    CEAP_FREQUENCY_CAP=3/7d          # contacts per customer per channel, all programs; "off"
"""

from __future__ import annotations

import os
import re
from datetime import UTC, datetime, time, timedelta
from functools import lru_cache
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from ceap.durations import parse_duration
from ceap.errors import ConfigError
from channels.base import Channel, FrequencyCap

DEFAULT_QUIET_HOURS = "21:00-08:00"
DEFAULT_FREQUENCY_CAP = "3/7d"
_HOURS = re.compile(r"^([01]\d|2[0-3]):([0-5]\d)-([01]\d|2[0-3]):([0-5]\d)$")


def quiet_hours(adapter: Channel) -> tuple[time, time] | None:
    """(start, end) local wall-clock times, or None when the channel has none."""
    text = getattr(adapter.options, "quiet_hours", None)
    if text is None:
        if not adapter.intrusive:
            return None
        text = os.environ.get("CEAP_QUIET_HOURS", DEFAULT_QUIET_HOURS)
    text = text.strip().lower()
    if text in ("", "off", "none"):
        return None
    m = _HOURS.match(text)
    if not m:
        raise ConfigError(f"quiet hours {text!r}: expected HH:MM-HH:MM, e.g. 21:00-08:00, or off")
    h1, m1, h2, m2 = (int(x) for x in m.groups())
    return time(h1, m1), time(h2, m2)


def frequency_cap(adapter: Channel) -> FrequencyCap | None:
    cap = getattr(adapter.options, "frequency_cap", None)
    if cap is not None:
        return cap
    text = os.environ.get("CEAP_FREQUENCY_CAP", DEFAULT_FREQUENCY_CAP).strip().lower()
    if text in ("", "off", "none"):
        return None
    count, _, window = text.partition("/")
    try:
        return FrequencyCap(max=int(count), window=parse_duration(window))
    except ValueError as exc:
        raise ConfigError(f"CEAP_FREQUENCY_CAP={text!r}: expected MAX/WINDOW, e.g. 3/7d") from exc


@lru_cache(maxsize=1024)
def zone(name: str | None) -> ZoneInfo:
    try:
        return ZoneInfo(name) if name else ZoneInfo("UTC")
    except (ZoneInfoNotFoundError, ValueError):
        return ZoneInfo("UTC")


def quiet_until(now: datetime, hours: tuple[time, time], tz: str | None) -> datetime | None:
    """The UTC end of the quiet period ``now`` falls in (customer-local), else None."""
    start, end = hours
    local = now.astimezone(zone(tz))
    wall = local.time().replace(tzinfo=None)
    if start <= end:
        inside = start <= wall < end
        day = local.date()
    else:  # across midnight: 21:00-08:00
        inside = wall >= start or wall < end
        day = local.date() + timedelta(days=1) if wall >= start else local.date()
    if not inside:
        return None
    until = datetime.combine(day, end, tzinfo=zone(tz))
    return until.astimezone(UTC)


def next_local_time(at: datetime, send_at: str | None, tz: str | None) -> datetime:
    """``at``, moved to the next ``send_at`` (``HH:MM``) wall-clock time in ``tz`` (UTC when
    unknown): the scalar twin of the pipeline's ``due_times`` for rows scheduled later."""
    if send_at is None:
        return at
    hours, minutes = (int(x) for x in send_at.split(":"))
    local = at.astimezone(zone(tz))
    target = local.replace(hour=hours, minute=minutes, second=0, microsecond=0)
    if target < local:
        target = datetime.combine(local.date() + timedelta(days=1), target.timetz())
    return target.astimezone(UTC)
