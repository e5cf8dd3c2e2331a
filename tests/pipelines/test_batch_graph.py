"""The batch graph as users and runners see it: stable step labels, the filter pushdown,
and a clean round trip through Beam's portable Runner API for every seed program."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

import pytest
from apache_beam.options.pipeline_options import PipelineOptions

from ceap.context import RunContext
from configs.schema import load_program, program_paths
from pipelines.batch import build_pipeline
from pipelines.graph import prefilter_count

ROOT = Path(__file__).resolve().parents[2]
SEEDS = program_paths(ROOT / "configs")


@pytest.fixture(autouse=True)
def sample_paths(tmp_path, monkeypatch):
    """Graph building lists source files, so give the seed configs a small warehouse."""
    from sample import generate_warehouse

    generate_warehouse(tmp_path / "data" / "warehouse", rows=500, seed=1)
    monkeypatch.chdir(tmp_path)


def labels(pipeline) -> set[str]:
    proto = pipeline.to_runner_api()
    return {t.unique_name for t in proto.components.transforms.values()}


@pytest.mark.parametrize("path", SEEDS, ids=lambda p: p.stem)
def test_seed_program_graph_round_trips_through_the_runner_api(path):
    program = load_program(path)
    ctx = RunContext(program=program.program, now=datetime(2026, 11, 1, tzinfo=UTC))
    pipeline = build_pipeline(program, ctx, PipelineOptions([]))

    proto = pipeline.to_runner_api()
    again = type(pipeline).from_runner_api(proto, pipeline.runner, PipelineOptions([]))

    names = labels(pipeline)
    assert labels(again) == names
    for label in program.filter_labels():
        assert any(n.endswith(f"Filter[{label}]") for n in names), label
    for stage in ("ToCandidates", "Score", "Rank", "Store", "DeadLetters"):
        assert stage in names


def test_leading_filters_on_source_columns_run_before_the_joins():
    program = load_program(ROOT / "configs" / "reviews.yaml")
    ctx = RunContext(program="reviews", now=datetime(2026, 11, 1, tzinfo=UTC))

    assert prefilter_count(program, ctx) == 1  # "recent" reads event_time only; "trust" is enriched
    names = labels(build_pipeline(program, ctx))
    assert "Prefilter/Filter[recent]" in names and "Filters/Filter[trust]" in names


def test_two_filters_of_one_type_get_distinct_stable_labels(tmp_path):
    from configs.schema import parse_program, read_yaml

    program = parse_program(
        read_yaml(
            """
program: p
action: a
subject_type: s
source: {type: parquet, options: {path: data/warehouse/deliveries}}
fields: {customer_id: customer_id, subject_id: product_id}
filters:
  - {type: expression, options: {keep: "quantity > 0"}}
  - {type: expression, options: {keep: "price > 1"}}
scoring: {models: [{id: m, type: column, options: {column: price}}]}
"""
        )
    )
    names = labels(
        build_pipeline(program, RunContext(program="p", now=datetime(2026, 11, 1, tzinfo=UTC)))
    )
    assert {"Filters/Filter[0:expression]", "Filters/Filter[1:expression]"} <= names
