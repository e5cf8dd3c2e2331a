"""Streaming micro-batches take Python/Arrow paths and big batches take DuckDB: both must
give the same answers (ranking, history counts, enrichment joins, context JSON, keys)."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta

import numpy as np
import pyarrow as pa
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from ceap import arrow
from transforms import enrichment, rank_order, sinks
from transforms.filters.lookup import KeyedCounts

T0 = datetime(2026, 11, 1, tzinfo=UTC)


def scored(rows: list[tuple]) -> pa.Table:
    return pa.table({
        "customer_id": [r[0] for r in rows], "subject_id": [r[1] for r in rows],
        "score": pa.array([r[2] for r in rows], pa.float64()),
        "event_time": pa.array([T0 + timedelta(hours=r[3]) for r in rows], arrow.UTC_US),
        "row": list(range(len(rows))),
    })  # fmt: skip


ROWS = st.lists(
    st.tuples(
        st.sampled_from(["c1", "c2", "c3", "c4"]), st.sampled_from(["s1", "s2", "s3"]),
        st.one_of(st.none(), st.sampled_from([0.1, 0.5, 0.5, 0.9])), st.integers(0, 3),
    ),
    min_size=1, max_size=40,
)  # fmt: skip


@settings(max_examples=150, deadline=None)
@given(
    rows=ROWS,
    top_n=st.one_of(st.none(), st.integers(1, 4)),
    per=st.sampled_from([None, "customer_id", "subject_id"]),
)
def test_ranking_small_and_duckdb_paths_agree(rows, top_n, per):
    table = scored(rows)
    small = rank_order._rank_small(table, top_n, per)
    original = arrow.SMALL_BATCH
    try:
        arrow.SMALL_BATCH = 0  # force the DuckDB path
        big = rank_order.rank_table(table, top_n, per)
    finally:
        arrow.SMALL_BATCH = original
    assert small[1:] == big[1:]

    def key(t: pa.Table) -> list:
        columns = ("customer_id", "subject_id", "row")
        return sorted(zip(*(t.column(c).to_pylist() for c in columns), strict=True))

    assert key(small[0]) == key(big[0])


@pytest.mark.parametrize("keys", [["a"], ["a", "b"]])
def test_keyed_counts_small_and_duckdb_paths_agree(keys):
    rng = np.random.default_rng(1)

    def values(n: int) -> list:
        return [None if x == 0 else f"v{x}" for x in rng.integers(0, 30, n)]

    small_table = pa.table({"a": values(200), "b": values(200)})
    big_table = pa.concat_tables([small_table] * 50)  # past the small-table threshold
    batch = pa.RecordBatch.from_pydict({"a": values(500), "b": values(500)})
    small = KeyedCounts(small_table, keys).lookup(batch, keys)
    big = KeyedCounts(big_table, keys).lookup(batch, keys)
    assert (big == small * 50).all() and small.sum() > 0


def test_enrichment_small_and_duckdb_paths_agree(tmp_path):
    import pyarrow.parquet as pq

    from configs.schema import EnrichConfig

    pq.write_table(
        pa.table(
            {"id": ["k1", "k2", "k2", "k3"], "x": [1.0, 2.0, 9.0, None], "y": ["a", "b", "c", None]}
        ),
        tmp_path / "t.parquet",
    )
    spec = EnrichConfig(
        type="parquet",
        key="customer_id",
        on="id",
        options={"path": str(tmp_path)},
        columns=["x", "y"],
    )
    from ceap.plugins import connectors

    spec.options = connectors.get("parquet").Options.model_validate(spec.options)
    batch = pa.RecordBatch.from_pydict(
        {"customer_id": ["k2", "k9", None, "k1", "k3"], "x": [0.0] * 5, "z": list(range(5))}
    )

    fn = enrichment._EnrichFn(spec, enrichment.shared.Shared(), "t")
    fn.setup()
    small = pa.Table.from_batches(list(fn.process(batch)))
    original = arrow.SMALL_BATCH
    try:
        arrow.SMALL_BATCH = 0
        big = pa.Table.from_batches(list(fn.process(batch)))
    finally:
        arrow.SMALL_BATCH = original
    assert small.sort_by("z").to_pylist() == big.sort_by("z").select(small.column_names).to_pylist()
    assert small.sort_by("z").column("x").to_pylist() == [
        2.0,
        None,
        None,
        1.0,
        None,
    ]  # first k2 row wins


def test_context_json_and_keys_small_and_duckdb_paths_agree():
    ctx = pa.RecordBatch.from_pydict({
        "region": ["eu", None, "日本"], "n": [1, None, 3], "at": pa.array([T0, None, T0], arrow.UTC_US),
        "ok": [True, False, None],
    })  # fmt: skip
    keys = pa.array(["p|c1|s1|email", "p|c2|s2|sms", "p|c3|s3|push"])
    small = (sinks._context_json(ctx).to_pylist(), sinks._digest(keys).to_pylist())
    original = arrow.SMALL_BATCH
    try:
        arrow.SMALL_BATCH = 0
        big = (sinks._context_json(ctx).to_pylist(), sinks._digest(keys).to_pylist())
    finally:
        arrow.SMALL_BATCH = original
    assert [json.loads(x) for x in small[0]] == [json.loads(x) for x in big[0]]
    assert json.loads(small[0][0]) == {
        "region": "eu",
        "n": 1,
        "at": "2026-11-01T00:00:00Z",
        "ok": True,
    }
    assert small[1] == big[1]
