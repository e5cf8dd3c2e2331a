"""KeyIndex: exact positions of text keys, whatever the hashes do."""

from __future__ import annotations

from unittest import mock

import numpy as np
import pyarrow as pa
from hypothesis import given, settings
from hypothesis import strategies as st

from ceap import key_index
from ceap.key_index import KeyIndex

texts = st.text(alphabet="ab\x1fé0 ", max_size=4)


def expected(keys: list[str], probe: list[str | None]) -> list[int]:
    where = {k: i for i, k in enumerate(keys)}
    return [where.get(p, -1) if p is not None else -1 for p in probe]


@settings(max_examples=60, deadline=None)
@given(st.lists(texts, unique=True, max_size=40), st.lists(st.none() | texts, max_size=60))
def test_positions_are_those_of_a_dict(keys, probe):
    index = KeyIndex(pa.array(keys, pa.string()))
    assert index.positions(pa.array(probe, pa.string())).tolist() == expected(keys, probe)


@settings(max_examples=30, deadline=None)
@given(st.lists(texts, unique=True, min_size=1, max_size=30), st.lists(texts, max_size=40))
def test_colliding_hashes_cost_time_never_a_wrong_row(keys, probe):
    """Every key hashed into one of 3 values: probes walk past other keys of the same hash."""
    real = key_index.hashes
    with mock.patch.object(key_index, "hashes", lambda k: real(k) % np.uint64(3)):
        index = KeyIndex(pa.array(keys, pa.string()))
        got = index.positions(pa.array(probe, pa.string())).tolist()
    assert got == expected(keys, probe)


def test_take_aligns_a_table_with_the_probe_and_leaves_misses_null():
    index = KeyIndex(pa.array(["c1", "c2", "c3"]))
    table = pa.table({"score": [0.1, 0.2, 0.3]})
    got = index.take(table, pa.chunked_array([["c3", None], ["zz", "c1"]]))
    assert got.column("score").to_pylist() == [0.3, None, None, 0.1]


def test_an_empty_index_finds_nothing():
    assert KeyIndex(pa.array([], pa.string())).positions(pa.array(["a"])).tolist() == [-1]


def fixed(size: int):
    return st.text(alphabet="ab\x00é0", min_size=size, max_size=size).filter(
        lambda t: len(t.encode()) == size
    )


@settings(max_examples=60, deadline=None)
@given(
    st.integers(1, 12).flatmap(
        lambda size: st.tuples(
            st.lists(fixed(size), unique=True, min_size=1, max_size=40),
            st.lists(st.none() | fixed(size) | texts, max_size=60),
        )
    ),
    st.sampled_from([pa.string(), pa.large_string()]),
    st.integers(0, 3),
)
def test_keys_of_one_width_find_what_a_dict_finds(case, kind, cut):
    """Keys of one byte width take the numpy path (words, not DuckDB and Arrow): probes of
    other widths, nulls, NUL bytes and sliced arrays included."""
    keys, probe = case
    index = KeyIndex(pa.array(["pad"] * cut + keys, kind).slice(cut))
    assert index._width == len(keys[0].encode())
    probed = pa.array(["x"] * cut + probe, kind).slice(cut)
    assert index.positions(probed).tolist() == expected(keys, probe)


@settings(max_examples=30, deadline=None)
@given(st.lists(fixed(3), unique=True, min_size=1, max_size=30), st.lists(fixed(3), max_size=40))
def test_colliding_hashes_of_one_width_cost_time_never_a_wrong_row(keys, probe):
    real = key_index.fixed_keys.hashes
    with mock.patch.object(key_index.fixed_keys, "hashes", lambda w: real(w) % np.uint64(3)):
        index = KeyIndex(pa.array(keys, pa.string()))
        got = index.positions(pa.array(probe, pa.string())).tolist()
    assert got == expected(keys, probe)
