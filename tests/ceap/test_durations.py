"""Durations as config authors write them."""

from __future__ import annotations

from datetime import timedelta

import pytest
from hypothesis import given
from hypothesis import strategies as st

from ceap.durations import format_duration, parse_duration


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("30s", timedelta(seconds=30)),
        ("15m", timedelta(minutes=15)),
        ("1h", timedelta(hours=1)),
        ("3d", timedelta(days=3)),
        ("2w", timedelta(weeks=2)),
        ("1h30m", timedelta(hours=1, minutes=30)),
        ("1d2h3m4s", timedelta(days=1, hours=2, minutes=3, seconds=4)),
        (" 1H 30M ", timedelta(hours=1, minutes=30)),
        ("1.5h", timedelta(minutes=90)),
        ("0s", timedelta(0)),
        (timedelta(days=1), timedelta(days=1)),
    ],
)
def test_parse(text, expected):
    assert parse_duration(text) == expected


@pytest.mark.parametrize(
    "bad",
    [
        "3x",
        "",
        "h",
        "1h30",
        "30m1",
        "-5m",
        "1 day",
        "1d-2h",
        -1,
        float("nan"),
        True,
        "9999999999d",
        10**20,
        # a bare number has no unit: 30 seconds? days? (a config's ``ttl: 30``)
        "45",
        45,
        0,
        2.5,
        "2.5",
    ],
)
def test_parse_errors(bad):
    with pytest.raises(ValueError, match="duration"):
        parse_duration(bad)


@pytest.mark.parametrize(
    ("value", "text"),
    [
        (timedelta(days=3), "3d"),
        (timedelta(hours=36), "36h"),
        (timedelta(minutes=90), "90m"),
        (timedelta(seconds=61), "61s"),
        (timedelta(0), "0s"),
    ],
)
def test_format_is_the_shortest_exact_form(value, text):
    assert format_duration(value) == text


@given(st.integers(min_value=0, max_value=10**8))
def test_format_round_trips(seconds):
    value = timedelta(seconds=seconds)
    assert parse_duration(format_duration(value)) == value
