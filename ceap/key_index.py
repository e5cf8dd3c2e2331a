"""``KeyIndex``: a hash index over a lookup table's text keys, built once and probed by
every batch.

A DuckDB join per batch builds its hash table again for every batch and scans the whole
lookup table each time: against a 1M-row customer table that is ~100 ms per batch however
small the batch. This index hashes the table's keys once (DuckDB's 64-bit ``hash``), keeps
them in an open-addressing table (numpy arrays, vectorised inserts and probes), and answers
a batch in time proportional to the batch: ~40 ms for 262k keys against 1M. Matches are
exact: a probe whose hash equals a table key's is compared as text before it counts, and
a different key with the same hash goes on probing, so a hash collision costs time, never a
wrong row. Keys of one byte width (most ids) are hashed and compared as numpy byte strings
(``ceap/fixed_keys.py``) instead of by DuckDB and Arrow: a lookup then costs half as much.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from ceap import arrow, fixed_keys
from ceap.array_memo import memoized

EMPTY = -1
Check = Callable[[np.ndarray, np.ndarray], np.ndarray]
"""Whether the table keys at ``rows`` equal the probe keys at ``at``, element-wise."""
_GOLDEN = np.uint64(0x9E3779B97F4A7C15)
"""Fibonacci hashing: a slot is the top bits of hash x 2^64/phi, so keys whose hashes
differ only in a few bits (``C0000001``, ``C0000002``) still spread over the table."""
_FP_SHIFT = np.uint64(32)
_ROW_MASK = np.uint64(0xFFFFFFFF)
"""An entry: the key's hash fingerprint in the high 32 bits, its row in the low 32."""
_EMPTY_ENTRY = np.uint64(0xFFFFFFFFFFFFFFFF)


def hashes(keys: pa.Array) -> np.ndarray:
    """DuckDB's 64-bit hash of each text key (nulls hash too; callers mask them)."""
    table = arrow.query(arrow.local_duck(), "SELECT hash(k) AS h FROM t", t=pa.table({"k": keys}))
    return table.column("h").to_numpy()


def _fingerprint(hashed: np.ndarray) -> np.ndarray:
    """32 bits of a hash that the slot (its top bits, after the multiply) does not decide."""
    return hashed & _ROW_MASK


def _fixed(probe: pa.Array, size: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """A probe's words, which of its keys have the index's width, and their hashes."""
    values, ok = fixed_keys.of_width(probe, size)
    words = _read_only(fixed_keys.words(values))
    return words, _read_only(ok), _read_only(fixed_keys.hashes(words))


def _read_only(values: np.ndarray) -> np.ndarray:
    values.setflags(write=False)  # shared through the memo
    return values


class KeyIndex:
    """Row position of each key of ``keys`` (text, unique, no nulls), probed in batches."""

    def __init__(self, keys: pa.Array) -> None:
        self.keys = keys
        self._width = fixed_keys.width(keys)
        if self._width:
            self._words = fixed_keys.words(fixed_keys.of_width(keys, self._width)[0])
            hashed = fixed_keys.hashes(self._words)
        else:
            hashed = hashes(keys) if len(keys) else np.zeros(0, np.uint64)
        bits = max(4, (2 * len(keys) - 1).bit_length())  # load factor <= 1/2
        self._shift = np.uint64(64 - bits)
        self._mask = (1 << bits) - 1
        slots = np.full(1 << bits, EMPTY, np.int64)
        pending = np.arange(len(keys), dtype=np.int64)
        slot = self._slot(hashed)
        while len(pending):  # each round places the keys whose slot is free (one per slot)
            free = slots[slot[pending]] == EMPTY
            trying = pending[free]
            slots[slot[trying]] = trying
            placed = np.zeros(len(pending), bool)
            placed[free] = slots[slot[trying]] == trying
            pending = pending[~placed]
            slot[pending] = (slot[pending] + 1) & self._mask
        # Each slot holds its row and 32 bits of that row's hash in 8 bytes: a probe reads
        # both at once from a table half the size of two arrays (it is tens of MB, so every
        # probe round is a random memory access). Equal fingerprints are then confirmed as
        # text, as equal hashes were.
        if len(keys) >= _ROW_MASK:
            raise ValueError(f"a key index holds fewer than {_ROW_MASK:,} keys")
        used = slots != EMPTY
        entries = np.full(len(slots), _EMPTY_ENTRY, np.uint64)
        entries[used] = (_fingerprint(hashed[slots[used]]) << _FP_SHIFT) | slots[used].astype(
            np.uint64
        )
        self._entries = entries

    def _slot(self, hashed: np.ndarray) -> np.ndarray:
        return ((hashed * _GOLDEN) >> self._shift).astype(np.int64)

    def __len__(self) -> int:
        return len(self.keys)

    def positions(self, probe: pa.Array) -> np.ndarray:
        """The table row of each probe key, ``-1`` where absent (a null key never matches)."""
        n = len(probe)
        out = np.full(n, EMPTY, np.int64)
        if not n or not len(self.keys):
            return out
        if isinstance(probe, pa.ChunkedArray):
            probe = probe.combine_chunks()
        # A batch's keys often meet several indexes (enrichment, then the history filters).
        if self._width:
            size = self._width
            if pa.types.is_dictionary(probe.type):  # its values are what a dictionary holds
                probe = probe.dictionary_decode()
            words, ok, wanted = memoized(f"fixed{size}", [probe], lambda: _fixed(probe, size))

            def same(rows: np.ndarray, at: np.ndarray) -> np.ndarray:
                return fixed_keys.same(self._words, rows, words, at)
        else:
            ok = pc.is_valid(probe).to_numpy(zero_copy_only=False)
            wanted = memoized("hashes", [probe], lambda: _read_only(hashes(probe)))

            def same(rows: np.ndarray, at: np.ndarray) -> np.ndarray:
                return self._same_text(rows, probe, at)

        self._walk(np.flatnonzero(ok), wanted, out)
        # An equal fingerprint is an equal key but for a rare collision: compare all the
        # matches as text at once, and walk again, comparing text at every step, the few
        # that differ (comparing inside the walk cost two string gathers per probing round).
        hit = np.flatnonzero(out != EMPTY)
        differ = hit[~same(out[hit], hit)]
        if len(differ):
            out[differ] = EMPTY
            self._walk(differ, wanted, out, same)
        return out

    def _walk(
        self, todo: np.ndarray, wanted: np.ndarray, out: np.ndarray, check: Check | None = None
    ) -> None:
        """Linear probing for the ``todo`` probes, all at once: each round settles those
        whose slot is empty (absent) or holds their fingerprint (and, given ``check``, their
        key)."""
        slot = self._slot(wanted[todo])
        fingerprints = _fingerprint(wanted)
        while len(todo):
            entry = np.take(self._entries, slot)
            empty = entry == _EMPTY_ENTRY
            row = (entry & _ROW_MASK).astype(np.int64)
            same = ~empty & ((entry >> _FP_SHIFT) == fingerprints[todo])
            if check is not None and same.any():
                same[same] = check(row[same], todo[same])
            out[todo[same]] = row[same]
            going = ~(empty | same)
            todo, slot = todo[going], (slot[going] + 1) & self._mask

    def _same_text(self, rows: np.ndarray, probe: pa.Array, at: np.ndarray) -> np.ndarray:
        if not len(rows):
            return np.zeros(0, bool)
        equal = pc.equal(self.keys.take(pa.array(rows)), probe.take(pa.array(at)))
        return equal.to_numpy(zero_copy_only=False)

    def take(self, table: pa.Table, probe: pa.Array) -> pa.Table:
        """``table``'s rows (aligned with ``keys``) for each probe key; nulls where absent."""
        rows = self.positions(probe)
        return table.take(pa.array(rows, pa.int64(), mask=rows < 0))
