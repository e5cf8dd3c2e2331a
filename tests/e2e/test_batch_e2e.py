"""End to end: ``python run.py`` on generated data, checked row for row against an
independent computation of the same funnel in DuckDB SQL over the same Parquet files."""

from __future__ import annotations

import json
import os
import sqlite3
import subprocess
import sys
from datetime import UTC, datetime
from pathlib import Path

import duckdb
import pytest

from bench.reference import reviews_reference
from sample import generate_warehouse

ROOT = Path(__file__).resolve().parents[2]
AS_OF = datetime(2026, 11, 1, tzinfo=UTC)
NOW = "2026-11-01T00:00:00Z"
TOP_N = 400

PROGRAM = """
program: my_reviews
action: review
subject_type: product
source:
  type: parquet
  options: {{path: {wh}/deliveries}}
fields:
  customer_id: customer_id
  subject_id: product_id
  event_time: delivered_at
  context: [region, category]
enrich:
  - type: parquet
    key: customer_id
    options: {{path: {wh}/customers}}
    columns: [trust_score, opted_out, region, timezone, engagement_score]
  - type: parquet
    key: subject_id
    on: product_id
    options: {{path: {wh}/products}}
    columns: [category]
filters:
  - type: expression
    options: {{keep: "event_time >= now - duration('30d')"}}
  - type: expression
    options: {{keep: "trust_score >= 0.3 and not opted_out"}}
  - type: exclude_values
    options: {{column: category, values: [adult, tobacco]}}
  - type: frequency_cap
    options:
      max: 1
      window: 365d
      scope: subject
      history: {{type: parquet, options: {{path: {wh}/contacts}}, program_column: program, time_column: contacted_at}}
  - type: frequency_cap
    options:
      max: 3
      window: 30d
      scope: all
      history: {{type: parquet, options: {{path: {wh}/contacts}}, time_column: contacted_at}}
  - type: dedup
    options:
      history: {{type: parquet, options: {{path: {wh}/responses}}, program_column: program}}
scoring:
  models:
    - id: engagement
      type: column
      options: {{column: engagement_score}}
  min_score: 0.1
ranking: {{top_n: {top_n}, per: program}}
channels:
  - {{type: email, delay: 3d}}
  - {{type: in_app}}
"""


@pytest.fixture(scope="module")
def warehouse(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("wh")
    generate_warehouse(root, rows=6_000, seed=7, as_of=AS_OF)
    return root


def run_cli(args: list[str], home: Path, cwd: Path | None = None) -> subprocess.CompletedProcess:
    env = {**os.environ, "CEAP_HOME": str(home), "PYTHONPATH": str(ROOT)}
    return subprocess.run(
        [sys.executable, str(ROOT / "run.py"), *args], cwd=cwd or ROOT, env=env,
        capture_output=True, text=True, timeout=300,
    )  # fmt: skip


def table(home: Path, name: str, order: str) -> list[tuple]:
    with sqlite3.connect(home / "ceap.db") as con:
        return con.execute(f"SELECT * FROM {name} ORDER BY {order}").fetchall()


@pytest.mark.slow
def test_store_matches_independent_computation_and_reruns_change_nothing(warehouse, tmp_path):
    configs = tmp_path / "configs"
    configs.mkdir()
    (configs / "my_reviews.yaml").write_text(PROGRAM.format(wh=warehouse, top_n=TOP_N))
    home = tmp_path / "home"

    first = run_cli(
        ["--program", "my_reviews", "--mode", "batch", "--config-dir", str(configs), "--now", NOW],
        home,
    )
    assert first.returncode == 0, first.stderr
    assert "adds up" in first.stdout

    # The same funnel as the seed reviews program, written independently in SQL (the YAML
    # above says it differently: one combined expression, its own program name).
    expected = reviews_reference(str(warehouse), NOW, TOP_N, program="my_reviews")
    with sqlite3.connect(home / "ceap.db") as con:
        got = con.execute(
            "SELECT customer_id, subject_id, score, deliver_after, context FROM candidates "
            "ORDER BY score DESC, deliver_after DESC, customer_id, subject_id"
        ).fetchall()
        runs = con.execute("SELECT funnel FROM runs").fetchall()
    assert len(expected) == TOP_N  # the data is large enough for ranking to cut
    assert len(got) == len(expected)
    for (c, s, score, after, ctx), (ec, es, escore, eafter, eregion, ecat) in zip(
        got, expected, strict=True
    ):
        assert (c, s, after) == (ec, es, eafter)
        assert score == pytest.approx(escore)
        assert json.loads(ctx) == {"region": eregion, "category": ecat}

    funnel = json.loads(runs[0][0])
    bad = duckdb.sql(
        f"SELECT count(*) FROM read_parquet('{warehouse}/deliveries/*.parquet') "
        "WHERE customer_id IS NULL OR delivered_at IS NULL"
    ).fetchall()[0][0]
    total = duckdb.sql(
        f"SELECT count(*) FROM read_parquet('{warehouse}/deliveries/*.parquet')"
    ).fetchall()[0][0]
    assert funnel["read"] == total
    assert funnel["dead_letters"] == {"candidates": bad} and bad > 0
    assert funnel["candidates"] == TOP_N and funnel["adds_up"]
    assert sum(arm["candidates"] for arm in funnel["arms"].values()) == TOP_N  # per experiment arm
    assert len(table(home, "dead_letters", "origin")) == bad
    with sqlite3.connect(home / "ceap.db") as con:
        outbox = con.execute("SELECT channel, step, status FROM outbox").fetchall()
    assert len(outbox) == 2 * TOP_N and {r[2] for r in outbox} == {"pending"}
    assert {(c, step) for c, step, _ in outbox} == {("email", "email"), ("in_app", "in_app")}

    before = {t: table(home, t, "1, 2, 3") for t in ("candidates", "outbox", "dead_letters")}
    again = run_cli(["--program", "my_reviews", "--config-dir", str(configs), "--now", NOW], home)
    assert again.returncode == 0, again.stderr
    after = {t: table(home, t, "1, 2, 3") for t in ("candidates", "outbox", "dead_letters")}
    assert after == before
    # ... and the re-run's funnel says so: nothing queued, every row already in the outbox.
    with sqlite3.connect(home / "ceap.db") as con:
        rerun = json.loads(con.execute("SELECT funnel FROM runs ORDER BY rowid").fetchall()[-1][0])
    assert {(q["channel"], q["status"]): q["rows"] for q in rerun["queued"]} == {
        ("email", "already queued"): TOP_N, ("in_app", "already queued"): TOP_N,
    }  # fmt: skip
    assert {(q["channel"], q["status"]) for q in funnel["queued"]} == {
        ("email", "pending"), ("in_app", "pending"),
    }  # fmt: skip


def test_all_programs_isolated_from_a_broken_and_a_missing_one(warehouse, tmp_path):
    configs = tmp_path / "configs"
    configs.mkdir()
    (configs / "good.yaml").write_text(
        PROGRAM.format(wh=warehouse, top_n=50).replace("my_reviews", "good")
    )
    (configs / "broken.yaml").write_text(
        "program: broken\naction: x\nsubject_type: y\nfilters: [{type: nope}]\n"
    )
    missing = PROGRAM.format(wh=tmp_path / "nowhere", top_n=5).replace("my_reviews", "missing")
    (configs / "missing.yaml").write_text(missing)
    home = tmp_path / "home"

    result = run_cli(["--program", "all", "--config-dir", str(configs), "--now", NOW], home)

    assert result.returncode != 0
    assert "broken.yaml" in result.stderr and "scoring" in result.stderr
    assert "program missing failed" in result.stderr and "no .parquet" in result.stderr
    assert "funnel [good]" in result.stdout
    with sqlite3.connect(home / "ceap.db") as con:
        programs = {r[0] for r in con.execute("SELECT DISTINCT program FROM candidates")}
    assert programs == {"good"}


@pytest.mark.slow
def test_fresh_clone_default_command_generates_sample_and_stores_reviews(tmp_path):
    home = tmp_path / "home"
    result = run_cli(
        ["--program", "reviews", "--mode", "batch", "--config-dir", str(ROOT / "configs")],
        home,
        cwd=tmp_path,
    )
    assert result.returncode == 0, result.stderr
    assert "funnel [reviews]" in result.stdout and "adds up" in result.stdout
    with sqlite3.connect(home / "ceap.db") as con:
        assert (
            con.execute("SELECT count(*) FROM candidates WHERE program = 'reviews'").fetchone()[0]
            > 0
        )
