"""The ranking combine's accumulator and how it crosses the shuffle.

Beam lifts ``CombinePerKey(TopN)`` into a pre-combine before the shuffle and a merge after
it, so each bucket's accumulator is encoded once. With Beam's default (pickle), an Arrow
table that is a slice of larger buffers pickles those whole buffers: the seed program's
10M-row run pickled 342 MB for five accumulators (0.24 s). The Arrow IPC format writes
only the rows a table holds.
"""

from __future__ import annotations

import pickle
from typing import Any

import apache_beam as beam
import pyarrow as pa


class Acc:
    """A bucket's rows so far: ``table`` (pruned to the top rows when it grows), ``seen``
    (rows added), ``dropped`` (the key columns of rows a pruning cut, in chunks: a later
    row of the same key is then a duplicate, as in one pass over every row),
    ``caps`` (each group's largest ``top_n_column`` value among the rows pruned),
    ``floor`` (one group, after a prune that kept top_n rows: a score below it can no
    longer be among them).
    ``duplicates`` and ``cut`` are set by ``extract_output`` only, from those."""

    __slots__ = ("table", "seen", "dropped", "caps", "floor", "kept", "duplicates", "cut")

    def __init__(self) -> None:
        self.table: pa.Table | None = None
        self.seen = 0
        self.kept = 0  # rows held after the last prune: the next waits for twice as many
        self.dropped: list[pa.Table] = []
        self.caps: pa.Table | None = None
        self.floor: float | None = None
        self.duplicates = self.cut = 0


def _ipc(table: pa.Table | None) -> bytes | None:
    if table is None:
        return None
    sink = pa.BufferOutputStream()
    with pa.ipc.new_stream(sink, table.schema) as writer:
        writer.write_table(table)
    return sink.getvalue().to_pybytes()


def _table(data: bytes | None) -> pa.Table | None:
    return None if data is None else pa.ipc.open_stream(data).read_all()


class AccCoder(beam.coders.Coder):
    """``Acc`` as its numbers plus each table in the Arrow IPC stream format."""

    def encode(self, acc: Acc) -> bytes:
        parts = (
            acc.seen, acc.floor, acc.duplicates, acc.cut, acc.kept,
            _ipc(acc.table), [_ipc(t) for t in acc.dropped], _ipc(acc.caps),
        )  # fmt: skip
        return pickle.dumps(parts, pickle.HIGHEST_PROTOCOL)  # numbers and bytes only

    def decode(self, encoded: bytes) -> Acc:
        seen, floor, duplicates, cut, kept, table, dropped, caps = pickle.loads(encoded)  # noqa: S301 - our own bytes from encode(), within one job
        acc = Acc()
        acc.seen, acc.floor, acc.duplicates, acc.cut, acc.kept = seen, floor, duplicates, cut, kept
        acc.table, acc.caps = _table(table), _table(caps)
        acc.dropped = [_table(d) for d in dropped]
        return acc

    def estimate_size(self, acc: Acc) -> int:
        """What Beam's size sampling needs, from the buffer sizes: no encoding."""
        tables = [acc.table, acc.caps, *acc.dropped]
        return 64 + sum(t.nbytes for t in tables if t is not None)

    def is_deterministic(self) -> bool:
        return False

    def to_type_hint(self) -> Any:
        return Acc

    def __eq__(self, other: object) -> bool:
        return type(self) is type(other)

    def __hash__(self) -> int:
        return hash(type(self))


beam.coders.registry.register_coder(Acc, AccCoder)
