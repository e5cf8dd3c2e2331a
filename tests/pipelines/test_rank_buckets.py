"""Ranking buckets: on Beam's in-process runner with one worker the graph ranks in one
bucket (each part only added its own queries there); distributed runners keep 8 so workers
share the merge. Both give what one pass over every row gives."""

from __future__ import annotations

from datetime import UTC, datetime

import apache_beam as beam
import numpy as np
import pyarrow as pa
import pytest
from apache_beam.options.pipeline_options import PipelineOptions
from apache_beam.runners.portability.fn_api_runner import FnApiRunner
from apache_beam.testing.util import assert_that, equal_to

from ceap.context import RunContext
from ceap.workers import one_worker
from configs.schema import RankingConfig
from connectors.batch_coder import batches
from transforms.rank_order import rank_table
from transforms.ranking import Rank


def test_one_worker_is_the_in_process_runner_with_one_worker():
    assert one_worker(beam.Pipeline(runner=FnApiRunner()))
    two = PipelineOptions(["--direct_num_workers=2"])
    assert not one_worker(beam.Pipeline(runner=FnApiRunner(), options=two))
    assert not one_worker(beam.Pipeline(options=PipelineOptions(["--runner=DirectRunner"])))


def scored_rows(seed: int, n: int = 6_000) -> pa.Table:
    rng = np.random.default_rng(seed)
    customers = rng.integers(0, 900, n)  # repeats: duplicate keys within and across batches
    return pa.table({
        "customer_id": [f"c{c:04d}" for c in customers],
        "subject_id": [f"e{s:03d}" for s in rng.integers(0, 40, n)],
        "event_time": pa.array(rng.integers(0, 10**12, n), pa.timestamp("us", tz="UTC")),
        "score": np.round(rng.random(n), 3), "model_id": ["m"] * n, "treatment": ["t"] * n,
        "timezone": pa.nulls(n, pa.string()),
    })  # fmt: skip


def keys(table: pa.Table) -> list[tuple]:
    columns = [table.column(c).to_pylist() for c in ("customer_id", "subject_id", "score")]
    return list(zip(*columns, strict=True))


@pytest.mark.parametrize("buckets", [1, 8])
def test_any_bucket_count_ranks_as_one_pass(buckets):
    table = scored_rows(seed=buckets)
    expected, duplicates, cut = rank_table(table, 7, "subject_id")
    ctx = RunContext(program="p", now=datetime(2026, 11, 1, tzinfo=UTC))
    with beam.Pipeline(runner=FnApiRunner()) as p:
        ranked = (
            p
            | beam.Create(table.to_batches(max_chunksize=500))
            | batches(beam.Map(lambda b: b))
            | Rank(RankingConfig(top_n=7, per="subject"), ctx, buckets=buckets)
        )
        assert_that(ranked.ranked | beam.FlatMap(keys), equal_to(keys(expected)))
    counters = {c.key.metric.name: c.committed for c in p.result.metrics().query()["counters"]}
    assert counters["ranked_out|duplicate key"] == duplicates > 0
    assert counters["ranked_out|below top_n"] == cut
