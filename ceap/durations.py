"""Durations as written in program configs: ``30s``, ``15m``, ``1h``, ``3d``, ``2w``.

Combined forms (``1h30m``) and bare integers (seconds) are accepted too, so a config
author never has to convert units by hand.
"""

from __future__ import annotations

import re
from datetime import timedelta
from typing import Annotated

from pydantic import BeforeValidator, PlainSerializer

_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 7 * 86400}
_PART = re.compile(r"(\d+(?:\.\d+)?)([smhdw])")


def parse_duration(value: str | int | float | timedelta) -> timedelta:
    """Parses ``3d``, ``1h30m``, ``45`` (seconds) or a timedelta; raises ValueError."""
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
    if isinstance(value, int | float):
        if not value >= 0:  # negative or NaN
            raise ValueError(f"a duration is a number of seconds >= 0, not {value!r}")
        return timedelta(seconds=value)
    text = str(value).strip().lower().replace(" ", "")
    if text.isdigit():
        return timedelta(seconds=int(text))
    pos, seconds = 0, 0.0
    for match in _PART.finditer(text):
        if match.start() != pos:
            break
        seconds += float(match.group(1)) * _UNITS[match.group(2)]
        pos = match.end()
    if not text or pos != len(text):
        raise ValueError(f"{value!r} is not a duration; expected e.g. 30s, 15m, 1h, 3d")
    return timedelta(seconds=seconds)


def format_duration(value: timedelta) -> str:
    """The shortest exact form, so a round trip through YAML is stable."""
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
