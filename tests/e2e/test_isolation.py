"""Use case 6, end to end through ``run.py``: program A's model throws on every row; A falls
back to its cached scores, its circuit opens and is reported, and program B, in the same
``--program all`` run, stores exactly what it stores when run alone."""

from __future__ import annotations

import os
import sqlite3
import subprocess
import sys
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from ceap.errors import EXIT_DEGRADED
from scorers.base import Scorer

ROOT = Path(__file__).resolve().parents[2]
NOW = "2026-11-01T00:00:00Z"


class AlwaysFails(Scorer):
    """A model whose endpoint is down: every call raises."""

    def score(self, batch):
        raise ConnectionError("model endpoint refused the connection")


PROGRAM = """
program: {name}
action: review
subject_type: product
source: {{type: parquet, options: {{path: {data}}}}}
fields: {{customer_id: customer_id, subject_id: subject_id, event_time: event_time, context: [region]}}
filters:
  - {{name: keen, type: expression, options: {{keep: "propensity >= 0.2"}}}}
scoring:
  models: [{model}]
  min_score: 0.3
  fallback: cached
ranking: {{top_n: 150, per: program}}
channels: [{{type: in_app}}, {{type: email, delay: 1d}}]
"""
RULE = "{id: rule_v1, type: column, options: {column: propensity}}"
BROKEN = f'{{id: broken_v2, type: "{__name__}:AlwaysFails"}}'


def write_source(folder: Path, prefix: str, files: int, rows: int) -> None:
    """``files`` Parquet files (so the scorer sees several batches) of distinct keys."""
    folder.mkdir(parents=True)
    for f in range(files):
        ids = range(f * rows, (f + 1) * rows)
        pq.write_table(
            pa.table(
                {
                    "customer_id": [f"{prefix}{i % 97:03d}" for i in ids],
                    "subject_id": [f"s{i}" for i in ids],
                    "event_time": pa.array(
                        [1_790_000_000_000_000 + i * 1_000_000 for i in ids],
                        pa.timestamp("us", "UTC"),
                    ),
                    "region": ["eu" if i % 3 else "us" for i in ids],
                    "propensity": [(i * 37 % 100) / 100 for i in ids],
                }
            ),
            folder / f"part-{f}.parquet",
        )


def run_cli(args: list[str], home: Path) -> subprocess.CompletedProcess:
    env = {**os.environ, "CEAP_HOME": str(home), "PYTHONPATH": str(ROOT)}
    return subprocess.run(
        [sys.executable, str(ROOT / "run.py"), *args, "--now", NOW], cwd=ROOT, env=env,
        capture_output=True, text=True, timeout=300,
    )  # fmt: skip


def rows(home: Path, sql: str) -> list[tuple]:
    with sqlite3.connect(home / "ceap.db") as con:
        return con.execute(sql).fetchall()


def configs(folder: Path, data: Path, **programs: str) -> Path:
    folder.mkdir()
    for name, model in programs.items():
        (folder / f"{name}.yaml").write_text(
            PROGRAM.format(name=name, data=data / name, model=model)
        )
    return folder


@pytest.mark.slow
def test_a_failing_program_does_not_change_another_in_the_same_run(tmp_path):
    data = tmp_path / "data"
    write_source(data / "prog_a", "a", files=8, rows=30)
    write_source(data / "prog_b", "b", files=3, rows=80)
    together, alone = tmp_path / "together", tmp_path / "alone"

    # Yesterday A's model worked: its scores are in the store, for the fallback.
    first = run_cli(
        ["--program", "prog_a", "--config-dir", str(configs(tmp_path / "c1", data, prog_a=RULE))],
        together,
    )
    assert first.returncode == 0, first.stderr
    cached = rows(together, "SELECT subject_id, score FROM candidates ORDER BY subject_id")
    assert cached

    # Today it throws on every row, in a run of every program.
    both = configs(tmp_path / "c2", data, prog_a=BROKEN, prog_b=RULE)
    run = run_cli(["--program", "all", "--config-dir", str(both)], together)
    # It ran, degraded: a distinct exit code, and the run recorded as such (B's is ok).
    assert run.returncode == EXIT_DEGRADED, run.stderr
    assert "ran degraded" in run.stderr and "prog_a" in run.stderr.split("ran degraded")[1]
    latest = "SELECT status FROM runs WHERE program = ? ORDER BY started_at DESC LIMIT 1"
    assert rows(together, latest.replace("?", "'prog_a'")) == [("degraded",)]
    assert rows(together, latest.replace("?", "'prog_b'")) == [("ok",)]
    funnel_a = run.stdout.split("funnel [prog_b]")[0]
    assert "DEGRADED: model broken_v2: circuit breaker opened" in funnel_a
    assert "CIRCUIT OPEN: model broken_v2" in funnel_a
    assert "scored from cache (fallback)" in funnel_a
    assert "circuit open after" in run.stderr and "ALERT program prog_a" in run.stderr

    # A: every row it had a score for kept that score (and the model that gave it) ...
    after = rows(
        together,
        "SELECT subject_id, score, model_id, treatment FROM candidates "
        "WHERE program = 'prog_a' ORDER BY subject_id",
    )
    assert [(s, score) for s, score, _, _ in after] == cached
    assert {(m, t) for _, _, m, t in after} == {("rule_v1", "broken_v2")}
    # ... and the rows without one are dead letters saying why, most with the open circuit.
    reasons = [
        r for (r,) in rows(together, "SELECT reason FROM dead_letters WHERE program = 'prog_a'")
    ]
    assert reasons and all("broken_v2" in r for r in reasons)
    assert sum("circuit open" in r for r in reasons) > len(reasons) / 2

    # B alone, on a fresh store, stores exactly the same candidates and outbox rows.
    solo = run_cli(
        ["--program", "prog_b", "--config-dir", str(configs(tmp_path / "c3", data, prog_b=RULE))],
        alone,
    )
    assert solo.returncode == 0, solo.stderr
    for table, order in (
        ("candidates", "customer_id, subject_id"),
        ("outbox", "subject_id, channel"),
    ):
        sql = f"SELECT * FROM {table} WHERE program = 'prog_b' ORDER BY {order}"
        got, expected = rows(together, sql), rows(alone, sql)
        assert expected and got == expected, table
    funnel_b = run.stdout.split("funnel [prog_b]")[1]
    assert funnel_b.split("took")[0] == solo.stdout.split("funnel [prog_b]")[1].split("took")[0]
