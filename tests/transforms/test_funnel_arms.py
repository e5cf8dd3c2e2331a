"""Per-arm figures in the run summary: rows at or above min_score, their mean score and the
candidates, from the run's counters, and the responses recorded so far to each arm's
candidates of the program, from the store."""

from __future__ import annotations

import json
import logging
import sqlite3
from collections import Counter
from datetime import UTC, datetime
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from ceap.context import RunContext
from configs.schema import parse_program, read_yaml
from pipelines.batch import run_program
from stores.spec import open_store
from transforms.funnel import Funnel, arm_responses

COUNTS = {
    "read": 5, "candidates": 5,
    "arm|a|rows": 3, "arm|a|score_sum": 1_800_000, "arm|a|candidates": 3,
    "arm|b|rows": 2, "arm|b|score_sum": 500_000, "arm|b|candidates": 2,
}  # fmt: skip


def seed(store, add_candidates) -> None:
    """Arm a: 4 candidates of reviews, 2 answered; arm b: 3, 1 answered. Counted nowhere: a
    response of another program, one whose candidate is gone, a surveys candidate of arm a."""
    add_candidates(
        *[{"customer_id": f"C{i}", "subject_id": f"P{i}", "model_id": "a"} for i in range(4)]
    )
    add_candidates(
        *[{"customer_id": f"D{i}", "subject_id": f"P{i}", "model_id": "b"} for i in range(3)]
    )
    add_candidates({"program": "surveys", "customer_id": "C0", "subject_id": "S0", "model_id": "a"})
    for program, customer, subject in [
        ("reviews", "C0", "P0"), ("reviews", "C1", "P1"), ("reviews", "C1", "P1"),  # again: one
        ("reviews", "D2", "P2"), ("surveys", "C2", "P2"), ("reviews", "GONE", "P9"),
    ]:  # fmt: skip
        store.record_response(program, customer, subject, {"stars": 5})


def test_summary_shows_responses_so_far_per_arm(store, add_candidates):
    seed(store, add_candidates)
    funnel = Funnel.from_counts("reviews", COUNTS)
    funnel.add_responses(store)

    assert funnel.arm_summary() == {
        "a": {"rows": 3, "mean_score": 0.6, "candidates": 3, "stored": 4, "responses": 2,
              "response_rate": 0.5},
        "b": {"rows": 2, "mean_score": 0.25, "candidates": 2, "stored": 3, "responses": 1,
              "response_rate": 0.333333},
    }  # fmt: skip
    assert funnel.as_dict()["arms"]["b"]["responses"] == 1  # what the runs table records
    lines = [" ".join(line.split()) for line in funnel.render().splitlines()]
    assert lines[-4:] == [
        "arm a: candidates (of 3 scored >= min_score, mean 0.6000) 3",
        "arm a: responses so far (of 4 stored, 50.0%) 2",
        "arm b: candidates (of 2 scored >= min_score, mean 0.2500) 2",
        "arm b: responses so far (of 3 stored, 33.3%) 1",
    ]


class ArrowOnly:
    """A store that only gives whole tables (as DynamoDB does)."""

    def __init__(self, store) -> None:
        self._store = store

    def table(self, name: str) -> pa.Table:
        return self._store.table(name)


def test_other_stores_give_the_same_figures_through_duckdb(store, add_candidates):
    seed(store, add_candidates)
    assert arm_responses(ArrowOnly(store), "reviews") == arm_responses(store, "reviews") == {
        "a": {"stored": 4, "responses": 2}, "b": {"stored": 3, "responses": 1},
    }  # fmt: skip


class Broken:
    def table(self, name: str) -> pa.Table:
        raise ConnectionError("store unreachable")


def test_a_store_that_cannot_answer_leaves_the_summary_as_it_was(caplog):
    funnel = Funnel.from_counts("reviews", COUNTS)
    with caplog.at_level(logging.WARNING):
        funnel.add_responses(Broken())
    assert funnel.arm_responses == {}
    assert "responses so far" not in funnel.render()
    assert "responses" not in funnel.arm_summary()["a"]
    assert "store unreachable" in caplog.text


NOW = datetime(2026, 11, 1, tzinfo=UTC)
PROGRAM = """
program: reviews
action: review
subject_type: product
source: {{type: parquet, options: {{path: {path}}}}}
fields: {{customer_id: customer_id, subject_id: product_id}}
scoring:
  models:
    - {{id: rule_a, type: column, options: {{column: engagement_score}}, traffic: 50, treatment: propensity}}
    - {{id: rule_b, type: column, options: {{column: engagement_score}}, traffic: 50, treatment: control}}
ranking: {{top_n: 1000, per: program}}
channels: [{{type: in_app}}]
"""


def test_batch_run_summary_counts_responses_of_earlier_runs(tmp_path: Path):
    """Run, record responses to some candidates of each arm, run again: the second summary
    (and its runs record) shows them per arm."""
    n = 200
    pq.write_table(
        pa.table({
            "customer_id": [f"c{i:03d}" for i in range(n)], "product_id": [f"p{i}" for i in range(n)],
            "engagement_score": [0.2 + (i % 50) / 100 for i in range(n)],
        }),
        tmp_path / "rows.parquet",
    )  # fmt: skip
    config = parse_program(read_yaml(PROGRAM.format(path=tmp_path / "rows.parquet")), "x.yaml")
    db = tmp_path / "ceap.db"
    ctx = RunContext(program="reviews", now=NOW, store=f"sqlite:///{db}")
    first = run_program(config, ctx, [])
    assert first.arm_summary()["rule_a"]["responses"] == 0

    with sqlite3.connect(db) as con:
        rows = con.execute("SELECT customer_id, subject_id, model_id FROM candidates").fetchall()
    stored = Counter(model for _, _, model in rows)
    answered = [r for r in rows if r[2] == "rule_a"][:7] + [r for r in rows if r[2] == "rule_b"][:3]
    store = open_store(ctx.store)
    for customer, subject, _ in answered:
        store.record_response("reviews", customer, subject, "rated")
    store.close()

    second = run_program(config, ctx, [])
    summary = second.arm_summary()
    assert sorted(stored) == ["rule_a", "rule_b"] and sum(stored.values()) == n
    assert {arm: (a["stored"], a["responses"]) for arm, a in summary.items()} == {
        "rule_a": (stored["rule_a"], 7), "rule_b": (stored["rule_b"], 3),
    }  # fmt: skip
    text = second.render()
    rate_a = f"{7 / stored['rule_a']:.1%}"
    assert f"arm rule_a: responses so far (of {stored['rule_a']:,} stored, {rate_a})" in text
    with sqlite3.connect(db) as con:
        recorded = json.loads(con.execute("SELECT funnel FROM runs ORDER BY started_at DESC, "
                                          "rowid DESC LIMIT 1").fetchone()[0])  # fmt: skip
    assert recorded["arms"]["rule_b"]["responses"] == 3


def test_arm_lines_count_and_average_the_rows_at_or_above_min_score(tmp_path: Path):
    """The "scored by <model>" line counts every row the model scored; the arm line's count
    and mean leave out the rows then dropped below min_score, and its label says so (it read
    "of N scored", N smaller than the "scored by" count just above it)."""
    n = 200
    pq.write_table(
        pa.table({
            "customer_id": [f"c{i:03d}" for i in range(n)], "product_id": [f"p{i}" for i in range(n)],
            "engagement_score": [(i % 10) / 10 for i in range(n)],  # half of them under 0.5
        }),
        tmp_path / "rows.parquet",
    )  # fmt: skip
    text = PROGRAM.format(path=tmp_path / "rows.parquet")
    text = text.replace("ranking:", "  min_score: 0.5\nranking:")
    config = parse_program(read_yaml(text), "x.yaml")
    db = tmp_path / "ceap.db"
    funnel = run_program(
        config, RunContext(program="reviews", now=NOW, store=f"sqlite:///{db}"), []
    )

    with sqlite3.connect(db) as con:
        kept = con.execute(
            "SELECT model_id, count(*), avg(score) FROM candidates GROUP BY model_id"
        )
        kept = {model: (rows, mean) for model, rows, mean in kept.fetchall()}
    assert funnel.below_min_score == n // 2 and sum(rows for rows, _ in kept.values()) == n // 2
    assert sum(funnel.scored.values()) == n  # below min_score included
    lines = [" ".join(line.split()) for line in funnel.render().splitlines()]
    for arm, (rows, mean) in kept.items():
        assert funnel.scored[arm] > rows
        assert f"scored by {arm} {funnel.scored[arm]:,}" in lines
        assert (
            f"arm {arm}: candidates (of {rows:,} scored >= min_score, mean {mean:.4f}) {rows:,}"
            in lines
        )
        assert funnel.arm_summary()[arm]["rows"] == rows
        assert funnel.arm_summary()[arm]["mean_score"] == pytest.approx(mean, abs=1e-6)
    with sqlite3.connect(db) as con:
        recorded = json.loads(con.execute("SELECT funnel FROM runs").fetchone()[0])
    keys = ["candidates", "mean_score", "response_rate", "responses", "rows", "stored"]
    assert sorted(recorded["arms"]["rule_a"]) == keys  # the runs record keeps its keys
