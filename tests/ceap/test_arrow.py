"""Time columns of any shape become timestamp[us, UTC]."""

from __future__ import annotations

from datetime import UTC, date, datetime

import pyarrow as pa
import pyarrow.compute as pc
from hypothesis import given, settings
from hypothesis import strategies as st

from ceap import arrow
from ceap.arrow import UTC_US, as_text, to_utc

T = datetime(2024, 3, 1, 10, 0, tzinfo=UTC)


def check(values: pa.Array, times: list, ok: list) -> None:
    out, good = to_utc(values)
    assert out.type == UTC_US
    assert out.to_pylist() == times
    assert good.to_pylist() == ok


def test_timestamps_in_any_unit_and_zone():
    check(pa.array([T, None], pa.timestamp("s", tz="UTC")), [T, None], [True, True])
    naive = pa.array([T.replace(tzinfo=None)], pa.timestamp("ms"))  # naive is taken as UTC
    check(naive, [T], [True])
    paris = pa.array([T], pa.timestamp("us", tz="Europe/Paris"))
    check(paris, [T], [True])


def test_nanoseconds_are_truncated_not_an_error():
    ns = pa.array([int(T.timestamp()) * 10**9 + 123_456_789], pa.timestamp("ns"))
    check(ns, [T.replace(microsecond=123_456)], [True])


def test_dates_text_and_other_types():
    check(pa.array([date(2024, 3, 1)], pa.date32()), [T.replace(hour=0)], [True])
    check(
        pa.array(["2024-03-01T11:00:00+01:00", "not a time", None, "2024-03-01T10:00:00Z"]),
        [T, None, None, T],
        [True, False, True, True],
    )
    check(pa.array([1, None]), [None, None], [False, True])


def test_keys_as_text():
    assert as_text(pa.array([1, None, 3])).to_pylist() == ["1", None, "3"]
    assert as_text(pa.array(["a", "a"]).dictionary_encode()).to_pylist() == ["a", "a"]


@settings(max_examples=50, deadline=None)
@given(st.lists(st.none() | st.integers(-62_135_596_800_000_000, 253_402_300_799_999_999)))
def test_iso_seconds_is_strftime_of_the_second(micros):
    """The store's time text, from Arrow's cast, equals strftime's (nulls, years 1-9999,
    times before 1970 truncated to their second)."""
    times = pa.array(micros, pa.int64()).cast(pa.timestamp("us", tz="UTC"))
    want = pc.strftime(
        pc.cast(times, pa.timestamp("s", tz="UTC"), safe=False), format="%Y-%m-%dT%H:%M:%SZ"
    )
    assert arrow.iso_seconds(times).to_pylist() == want.to_pylist()


@settings(max_examples=100, deadline=None)
@given(
    st.lists(st.none() | st.text(alphabet="ab1 \t\n\x0b\x1f\xa0\u2003\u3000é", max_size=5)),
    st.integers(0, 2),
)
def test_trim_whitespace_is_arrows_trim(values, cut):
    """Skipping the trim when no value can start or end with whitespace changes nothing."""
    array = pa.array(["  x"] * cut + values, pa.string()).slice(cut)
    assert arrow.trim_whitespace(array).to_pylist() == pc.utf8_trim_whitespace(array).to_pylist()
