"""Capacity per subject (issue 18, item 4): ``ranking: {per: subject, top_n_column: capacity}``
caps each subject by its own column, ``top_n`` where it has none; both ranking paths agree."""

from __future__ import annotations

import pyarrow as pa
import pyarrow.compute as pc
import pytest

from ceap import arrow
from configs.schema import RankingConfig
from transforms.rank_order import rank_table
from transforms.ranking import TopN


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


@pytest.mark.parametrize("filler", [0, 3_000], ids=["small batch", "duckdb"])
def test_a_group_cap_counts_every_row_of_the_group(filler):
    """A group's cap is the largest among all its rows, a key's repeats included, and NaN is
    no cap, on both paths and in the batch combine (which prunes each bundle first): c0's
    best row in e1 carries 1, a worse repeat 3, so e1 holds 3; e2's only cap is NaN."""
    rows = [("c0", "e1", 0.9, 1.0), ("c0", "e1", 0.1, 3.0)]
    rows += [(f"c{i}", "e1", 0.5, None) for i in range(1, 5)]
    rows += [(f"c{i}", "e2", 0.5, float("nan")) for i in range(5)]
    rows += [(f"x{i}", "e3", 0.05, None) for i in range(filler)]
    n = len(rows)
    table = pa.table({
        "customer_id": [r[0] for r in rows], "subject_id": [r[1] for r in rows],
        "score": [r[2] for r in rows], "event_time": pa.nulls(n, arrow.UTC_US),
        "capacity": pa.array([r[3] for r in rows], pa.float64()),
    })  # fmt: skip
    kept, duplicates, cut = rank_table(table, 2, "subject_id", "capacity")
    per = pc.value_counts(kept.column("subject_id")).to_pylist()
    counts = {r["values"]: r["counts"] for r in per}
    assert (counts["e1"], counts["e2"], duplicates) == (3, 2, 1)
    assert cut == (5 - 3) + (5 - 2) + max(0, filler - 2)

    fn = TopN(RankingConfig(top_n=2, per="subject", top_n_column="capacity"))
    acc = fn.create_accumulator()
    for batch in table.to_batches(max_chunksize=1000):
        acc = fn.add_input(acc, batch)
    coder = fn.get_accumulator_coder()
    out = fn.extract_output(fn.merge_accumulators([coder.decode(coder.encode(fn.compact(acc)))]))
    assert sorted(out.table.column("customer_id").to_pylist()) == sorted(
        kept.column("customer_id").to_pylist()
    )
    assert (out.duplicates, out.cut) == (duplicates, cut)
