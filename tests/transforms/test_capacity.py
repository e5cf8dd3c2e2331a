"""Capacity per subject (issue 18, item 4): ``ranking: {per: subject, top_n_column: capacity}``
caps each subject by its own column, ``top_n`` where it has none; both ranking paths agree."""

from __future__ import annotations

import pyarrow as pa
import pytest

from ceap import arrow
from transforms.rank_order import rank_table


def rows(n_per_event: dict[str, int], capacity: dict[str, object]) -> pa.Table:
    customers, subjects, caps = [], [], []
    for event, n in n_per_event.items():
        for i in range(n):
            customers.append(f"c{i:04d}")
            subjects.append(event)
            caps.append(capacity.get(event))
    n = len(customers)
    return pa.table({
        "customer_id": customers, "subject_id": subjects,
        "score": [1.0 - i / (n + 1) for i in range(n)],
        "event_time": pa.nulls(n, arrow.UTC_US), "capacity": pa.array(caps, pa.float64()),
    })  # fmt: skip


@pytest.mark.parametrize("n", [3, 2_000], ids=["small batch", "duckdb"])
def test_each_subject_keeps_its_capacity(n):
    table = rows({"e1": n, "e2": n, "e3": n}, {"e1": 2, "e2": 0.0})  # e3: no capacity
    kept, duplicates, cut = rank_table(table, 1, "subject_id", "capacity")
    per = kept.group_by("subject_id").aggregate([("customer_id", "count")]).to_pylist()
    got = {r["subject_id"]: r["customer_id_count"] for r in per}
    assert got == {"e1": 2, "e3": 1}  # e2 holds no one; e3 falls back on top_n
    assert duplicates == 0 and cut == 3 * n - 3
    # the best-scored rows of each event are the ones kept
    assert sorted(
        kept.filter(pa.compute.equal(kept["subject_id"], "e1"))["customer_id"].to_pylist()
    ) == ["c0000", "c0001"]


def test_without_the_column_top_n_caps_every_subject():
    table = rows({"e1": 5}, {}).drop_columns(["capacity"])
    kept, _, cut = rank_table(table, 2, "subject_id", "capacity")
    assert kept.num_rows == 2 and cut == 3
