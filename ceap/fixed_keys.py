"""Text keys that all have one byte width (``C00000001``, zero-padded ids, UUIDs), read as
numpy byte strings: hashed and compared without a DuckDB query (~1 ms to register and
plan, per batch and lookup) or an Arrow string gather.

A key index over such keys (``ceap/key_index.py``) hashes its probes here too: a probe of
another width, or null, cannot equal any of its keys and is never looked up.
"""

from __future__ import annotations

import numpy as np
import pyarrow as pa

MAX_WIDTH = 64
"""Wider keys are hashed by DuckDB (each 8 bytes is one more pass over the batch here)."""
_SEED = np.uint64(0x9E3779B97F4A7C15)
_M1 = np.uint64(0xFF51AFD7ED558CCD)
_M2 = np.uint64(0xC4CEB9FE1A85EC53)
_TEXT = (pa.string(), pa.large_string(), pa.binary(), pa.large_binary())


def _offsets(keys: pa.Array) -> np.ndarray:
    kind = np.int64 if keys.type in (pa.large_string(), pa.large_binary()) else np.int32
    return np.frombuffer(keys.buffers()[1], kind)[keys.offset : keys.offset + len(keys) + 1]


def width(keys: pa.Array) -> int | None:
    """The byte width of every value of ``keys`` (text, no nulls), or None."""
    if keys.type not in _TEXT or keys.null_count or not len(keys):
        return None
    offsets = _offsets(keys)
    first = int(offsets[1] - offsets[0])
    if not 0 < first <= MAX_WIDTH or not (np.diff(offsets) == first).all():
        return None
    return first


def of_width(keys: pa.Array, size: int) -> tuple[np.ndarray, np.ndarray]:
    """``keys`` as ``S{size}`` byte strings, and which of them have that width (others,
    and nulls, are zero bytes there). Zero copy when every key has it."""
    n = len(keys)
    buffer = keys.buffers()[2] if keys.type in _TEXT and n else None
    if buffer is None:  # no text (all null or empty), or not text at all
        return np.zeros(n, f"S{size}"), np.zeros(n, bool)
    data, offsets = np.frombuffer(buffer, np.uint8), _offsets(keys)
    ok = np.diff(offsets) == size
    if keys.null_count:
        ok &= keys.is_valid().to_numpy(zero_copy_only=False)
    if ok.all():
        start = int(offsets[0])
        return data[start : start + n * size].view(f"S{size}"), ok
    values = np.zeros((n, size), np.uint8)
    rows = np.flatnonzero(ok)
    starts = offsets[rows]
    for j in range(size):  # a byte column at a time: memory stays O(n), not n x size
        values[rows, j] = data[starts + j]
    return values.reshape(-1).view(f"S{size}"), ok


def words(values: np.ndarray) -> np.ndarray:
    """The ``S{w}`` values as 8-byte words, zero padded: ``(ceil(w / 8), n)`` uint64, each
    word of every value contiguous (a gather is then a few fast 1-D takes). Two values of
    one width are equal when all their words are."""
    size, n = values.dtype.itemsize, len(values)
    count = -(-size // 8)
    raw = values.view(np.uint8).reshape(n, size)
    if size % 8:
        padded = np.zeros((n, count * 8), np.uint8)
        padded[:, :size] = raw
        raw = padded
    return np.ascontiguousarray(np.ascontiguousarray(raw).view(np.uint64).T)


def hashes(packed: np.ndarray) -> np.ndarray:
    """A 64-bit hash of each row of ``words()``: the words folded by multiply-xor, then
    MurmurHash3's finaliser (the index takes its slot from the top bits, its fingerprint
    from the low ones: both must vary)."""
    h = np.full(packed.shape[1], _SEED ^ np.uint64(len(packed)), np.uint64)
    for word in packed:
        h ^= word
        h *= _M1
        h ^= h >> np.uint64(31)
    h ^= h >> np.uint64(33)
    h *= _M1
    h ^= h >> np.uint64(33)
    h *= _M2
    h ^= h >> np.uint64(33)
    return h


def same(a: np.ndarray, rows: np.ndarray, b: np.ndarray, at: np.ndarray) -> np.ndarray:
    """Whether value ``rows[i]`` of ``words()`` array ``a`` equals value ``at[i]`` of ``b``."""
    equal = np.take(a[0], rows) == np.take(b[0], at)
    for i in range(1, len(a)):
        equal &= np.take(a[i], rows) == np.take(b[i], at)
    return equal
