"""``memoized``: the last few values derived from Arrow arrays, per thread.

A batch meets several lookups on the same keys (the customer's enrichment, then the
frequency cap and dedup on customer and subject): each built the same joined key text
and hashed it again. Arrow arrays are immutable, so flat arrays (text, binary, numbers)
whose buffers, offset, length and type are the same hold the same values; the memo keeps
the arrays it was given alive, so those buffer addresses cannot be reused by other data
while an entry exists.
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from collections.abc import Callable, Sequence
from typing import Any, TypeVar

import pyarrow as pa

T = TypeVar("T")
SIZE = 8
"""Entries kept per thread: a batch's few key columns and their derivatives."""

_local = threading.local()


def identity(array: pa.Array) -> tuple:
    """What makes two flat arrays the same values: their type, slice and buffer addresses."""
    buffers = tuple(b.address if b is not None else 0 for b in array.buffers())
    return (str(array.type), array.offset, len(array), buffers)


def _flat(array: pa.Array) -> bool:
    """Text, binary or fixed-width values: all of them in ``buffers()``. A dictionary's
    values and a nested array's children (their own slices) are not, so two such arrays
    could share every listed buffer and differ."""
    kind = array.type
    return (
        pa.types.is_string(kind)
        or pa.types.is_large_string(kind)
        or pa.types.is_binary(kind)
        or pa.types.is_large_binary(kind)
        or pa.types.is_primitive(kind)
    )


def memoized(tag: str, arrays: Sequence[pa.Array], compute: Callable[[], T]) -> T:
    """``compute()``, or the value it gave for the same ``tag`` and arrays lately."""
    items: OrderedDict[tuple, tuple[Any, T]] = getattr(_local, "items", None) or OrderedDict()
    _local.items = items
    if any(isinstance(a, pa.ChunkedArray) or not _flat(a) for a in arrays):
        return compute()  # no single set of buffers that says what the values are
    key = (tag, tuple(identity(a) for a in arrays))
    hit = items.get(key)
    if hit is not None:
        items.move_to_end(key)
        return hit[1]
    value = compute()
    items[key] = (tuple(arrays), value)
    if len(items) > SIZE:
        items.popitem(last=False)
    return value
