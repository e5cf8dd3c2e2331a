"""Durations as written in program configs: ``30s``, ``15m``, ``1h``, ``3d``, ``2w``.

Combined forms (``1h30m``) are accepted too, so a config author never has to convert
units by hand. A bare number is refused everywhere (configs, plugin options, expressions'
``duration('...')``, ``CEAP_FREQUENCY_CAP``): ``ttl: 30`` surely meant days, not seconds.
"""

from __future__ import annotations

import re
from datetime import timedelta
from typing import Annotated

from pydantic import BeforeValidator, PlainSerializer

_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 7 * 86400}
_PART = re.compile(r"(\d+(?:\.\d+)?)([smhdw])")


UNIT_HINT = "a duration needs a unit: write e.g. 30d, 12h, 15m or 30s"


def parse_duration(value: str | timedelta) -> timedelta:
    """Parses ``3d``, ``1h30m`` or a timedelta; raises ValueError (a bare number too)."""
    try:
        return _parse(value)
    except OverflowError:
        # pydantic reports ValueErrors with the key's path; an OverflowError would escape
        raise ValueError(f"{value!r} is too long a duration") from None


def _parse(value: str | int | float | timedelta) -> timedelta:
    if isinstance(value, timedelta):
        return value
    if isinstance(value, bool):
        raise ValueError("expected a duration like 30s, 15m, 1h, 3d")
    text = str(value).strip().lower().replace(" ", "")
    if isinstance(value, int | float) or re.fullmatch(r"[+-]?\d+(?:\.\d*)?", text):
        raise ValueError(f"{UNIT_HINT} (got {value!r})")
    pos, seconds = 0, 0.0
    for match in _PART.finditer(text):
        if match.start() != pos:
            break
        seconds += float(match.group(1)) * _UNITS[match.group(2)]
        pos = match.end()
    if not text or pos != len(text):
        raise ValueError(f"{value!r} is not a duration; expected e.g. 30s, 15m, 1h, 3d")
    return timedelta(seconds=seconds)


def parse_signed_duration(value: str | timedelta) -> timedelta:
    """``-1d``, ``+2h`` or ``3d``: a duration that may point back in time (a journey step
    ``at: {column: starts_at, offset: -1d}``)."""
    if isinstance(value, str) and value.strip().startswith(("-", "+")):
        text = value.strip()
        magnitude = parse_duration(text[1:])
        return -magnitude if text[0] == "-" else magnitude
    return parse_duration(value)


def format_duration(value: timedelta) -> str:
    """The shortest exact form, so a round trip through YAML is stable."""
    if value < timedelta(0):
        return "-" + format_duration(-value)
    seconds = int(value.total_seconds())
    for unit in ("d", "h", "m"):
        if seconds and seconds % _UNITS[unit] == 0:
            return f"{seconds // _UNITS[unit]}{unit}"
    return f"{seconds}s"


Duration = Annotated[
    timedelta,
    BeforeValidator(parse_duration),
    PlainSerializer(format_duration, return_type=str),
]
SignedDuration = Annotated[
    timedelta,
    BeforeValidator(parse_signed_duration),
    PlainSerializer(format_duration, return_type=str),
]
"""A duration that may be negative (``-1d``): offsets from a time, never waits."""
