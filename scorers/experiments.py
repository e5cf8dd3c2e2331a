"""A/B experiment arms by a salted, deterministic hash of customer_id.

bucket = murmur3_x86_32(f"{salt}:{customer_id}", seed=0, unsigned) % 10,000; arm i owns
the contiguous bucket range given by the cumulative ``traffic:`` shares in config order,
so a customer always lands in the same arm on any machine, and moving 90/10 to 50/50
moves only the customers whose buckets change hands.
"""

from __future__ import annotations

import mmh3
import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

BUCKETS = 10_000


def bucket(salt: str, customer_id: str) -> int:
    return mmh3.hash(f"{salt}:{customer_id}", 0, signed=False) % BUCKETS


def buckets(salt: str, customer_ids: pa.Array) -> np.ndarray:
    """Buckets for a whole column, hashing each distinct customer once."""
    unique = pc.unique(customer_ids)
    hashed = np.fromiter(
        (mmh3.hash(f"{salt}:{c}", 0, signed=False) % BUCKETS for c in unique.to_pylist()),
        dtype=np.int64, count=len(unique),
    )  # fmt: skip
    return hashed[pc.index_in(customer_ids, value_set=unique).to_numpy(zero_copy_only=False)]


def bounds(shares: list[float]) -> np.ndarray:
    """Upper bucket bound of each arm: shares [90, 10] -> [9000, 10000]."""
    edges = np.rint(np.cumsum(shares) / 100.0 * BUCKETS).astype(np.int64)
    edges[-1] = BUCKETS
    return edges


def assign(salt: str, customer_ids: pa.Array, shares: list[float]) -> np.ndarray:
    """The arm index of every row."""
    if len(shares) == 1:
        return np.zeros(len(customer_ids), dtype=np.int64)
    return np.searchsorted(bounds(shares), buckets(salt, customer_ids), side="right")
