"""Data for bench/batch.py's second program shape (``bench/programs/audiences.yaml``):
``activity`` (the source: string user and item keys, a visit time, a dwell time),
``users`` (300k customers) and ``items`` (400 subjects), as Parquet.

Lookup keys are unique (so "first row wins" needs no tie rule in the reference query);
the source has what real feeds have: visitors with no profile, a few rows without a
user key (dead letters), repeated (user, item) pairs.
"""

from __future__ import annotations

from datetime import datetime, timedelta
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

USERS = 300_000
ITEMS = 400
CATEGORIES = ["music", "sport", "talk", "film", "food", "art", "kids", "tech", "restricted",
              "archived"]  # fmt: skip
SEGMENTS = ["new", "casual", "regular", "fan", "lapsed"]


def _keys(prefix: str, ids: np.ndarray, width: int) -> pa.Array:
    return pa.array(np.char.add(prefix, np.char.zfill(ids.astype(str), width)).astype(object))


def generate_audiences(root: Path, rows: int, as_of: datetime, seed: int = 42, files: int = 5):
    rng = np.random.default_rng(seed)
    root = Path(root)
    for name in ("activity", "users", "items"):
        (root / name).mkdir(parents=True, exist_ok=True)
    affinity = rng.random(USERS)
    users = pa.table({
        "user_key": _keys("u-", np.arange(USERS), 7),
        "affinity": pa.array(affinity, mask=rng.random(USERS) < 0.03),
        "opted_out": pa.array(rng.random(USERS) < 0.02),
        "segment": pa.array(np.array(SEGMENTS, dtype=object)[rng.integers(0, len(SEGMENTS), USERS)]),
    })  # fmt: skip
    pq.write_table(users, root / "users" / "part-0.parquet")
    items = pa.table({
        "item_key": _keys("ev-", np.arange(ITEMS), 4),
        "category": pa.array(np.array(CATEGORIES, dtype=object)[rng.integers(0, len(CATEGORIES), ITEMS)]),
    })  # fmt: skip
    pq.write_table(items, root / "items" / "part-0.parquet")
    start = np.datetime64(as_of.replace(tzinfo=None) - timedelta(days=60), "us")
    per_file = -(-rows // files)
    for f in range(files):
        n = min(per_file, rows - f * per_file)
        if n <= 0:
            break
        user = rng.integers(0, int(USERS * 1.05), n)  # 5% of visitors have no profile
        keys = _keys("u-", user, 7)
        seen = start + rng.integers(0, 60 * 86_400_000_000, n).astype("timedelta64[us]")
        activity = pa.table({
            "user_key": pa.array(keys.to_numpy(zero_copy_only=False), mask=rng.random(n) < 0.0005),
            "item_key": _keys("ev-", rng.integers(0, ITEMS, n), 4),
            "seen_at": pa.array(seen, pa.timestamp("us", tz="UTC")),
            "dwell": rng.exponential(8.0, n).round(1),
        })  # fmt: skip
        pq.write_table(activity, root / "activity" / f"part-{f}.parquet", row_group_size=262_144)
