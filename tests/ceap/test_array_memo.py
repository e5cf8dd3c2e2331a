"""memoized: a value derived from Arrow arrays is computed once per arrays, never handed
back for other arrays."""

from __future__ import annotations

import gc
import weakref

import pyarrow as pa

from ceap import array_memo
from ceap.array_memo import memoized


def counting():
    calls = []

    def compute(value):
        calls.append(value)
        return value

    return calls, compute


def test_the_same_arrays_compute_once_other_arrays_again():
    calls, compute = counting()
    keys = pa.array(["a", "b", "c"])
    assert memoized("t", [keys], lambda: compute(1)) == 1
    assert memoized("t", [keys], lambda: compute(2)) == 1  # same buffers: remembered
    assert memoized("u", [keys], lambda: compute(3)) == 3  # another derivation
    assert memoized("t", [keys.slice(1)], lambda: compute(4)) == 4  # another slice
    assert memoized("t", [pa.array(["a", "b", "c"])], lambda: compute(5)) == 5  # equal, not same
    assert calls == [1, 3, 4, 5]


def test_chunked_arrays_are_not_remembered():
    calls, compute = counting()
    chunked = pa.chunked_array([["a"], ["b"]])
    memoized("t", [chunked], lambda: compute(1))
    memoized("t", [chunked], lambda: compute(2))
    assert calls == [1, 2]


def test_an_entry_keeps_its_arrays_alive_so_their_addresses_are_not_reused():
    keys = pa.array(["x"] * 1000)
    ref = weakref.ref(keys)
    memoized("t", [keys], lambda: 1)
    del keys
    gc.collect()
    assert ref() is not None
    for i in range(array_memo.SIZE):  # pushed out by newer entries: released
        memoized("t", [pa.array([str(i)])], lambda: 0)
    gc.collect()
    assert ref() is None


def test_dictionary_and_nested_arrays_are_never_remembered():
    """Their values are not all in buffers(): two dictionaries over the same indices differ."""
    calls, compute = counting()
    words = pa.array(["x", "y", "x"]).dictionary_encode()
    other = pa.DictionaryArray.from_arrays(words.indices, pa.array(["p", "q"]))
    assert memoized("t", [words], lambda: compute(1)) == 1
    assert memoized("t", [other], lambda: compute(2)) == 2
    pairs = pa.StructArray.from_arrays([pa.array([1, 2, 3])], ["a"])
    memoized("t", [pairs.slice(1)], lambda: compute(3))
    memoized("t", [pairs.slice(1)], lambda: compute(4))
    assert calls == [1, 2, 3, 4]


def test_an_index_probed_with_dictionaries_over_the_same_indices_finds_each_one():
    from ceap.key_index import KeyIndex

    words = pa.array(["x", "y", "x"]).dictionary_encode()
    other = pa.DictionaryArray.from_arrays(words.indices, pa.array(["p", "q"]))
    index = KeyIndex(pa.array(["x", "y", "p", "q"]))
    assert index.positions(words).tolist() == [0, 1, 0]
    assert index.positions(other).tolist() == [2, 3, 2]
