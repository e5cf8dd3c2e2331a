"""End to end on CSV sources, as a user runs them: a ragged line (more or fewer fields than
the header) is one dead letter naming its line, with its text, while every other line is
processed and the funnel adds up; ids are stored exactly as written (``1E5``, ``0012``,
``12.50``), and an enrichment joined on a source column matches on its text."""

from __future__ import annotations

import gzip
import json
import os
import sqlite3
import subprocess
import sys
from datetime import UTC, datetime
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq

from ceap.context import RunContext
from configs.schema import parse_program, read_yaml
from pipelines.batch import run_program

ROOT = Path(__file__).resolve().parents[2]
NOW = "2026-11-25T00:00:00Z"

RAGGED_PROGRAM = """
program: csv_rows
action: review
subject_type: product
source: {{type: csv, options: {{path: {path}}}}}
fields: {{customer_id: customer_id, subject_id: product_id, event_time: delivered_at}}
scoring:
  models: [{{id: rule, type: column, options: {{column: score}}}}]
ranking: {{top_n: 100, per: program}}
channels: [{{type: in_app}}]
"""
HEADER = "customer_id,product_id,delivered_at,score\n"


def query(db: Path, sql: str) -> list[tuple]:
    with sqlite3.connect(db) as con:
        return con.execute(sql).fetchall()


def test_ragged_lines_are_dead_letters_and_the_rest_is_processed(tmp_path):
    data, configs, home = tmp_path / "in", tmp_path / "configs", tmp_path / "home"
    data.mkdir()
    configs.mkdir()
    (data / "part-0.csv").write_text(
        HEADER + "C1,P1,2026-11-20T00:00:00Z,0.9\nC2,P2,2026-11-20T00:00:00Z,0.8\n"
    )
    with gzip.open(data / "part-1.csv.gz", "wt") as handle:  # gzip, ragged lines inside
        handle.write(
            HEADER
            + "C3,P3,2026-11-21T00:00:00Z,0.7\n"
            + "C3,C\n"  # line 3: 2 fields
            + "C4,P4,2026-11-21T00:00:00Z,0.6\n"
            + "C5,P5,2026-11-21T00:00:00Z,0.5,extra\n"  # line 5: 5 fields
        )
    (configs / "csv_rows.yaml").write_text(RAGGED_PROGRAM.format(path=data))
    env = {**os.environ, "CEAP_HOME": str(home), "PYTHONPATH": str(ROOT)}
    result = subprocess.run(
        [sys.executable, str(ROOT / "run.py"), "--program", "csv_rows", "--mode", "batch",
         "--config-dir", str(configs), "--now", NOW],
        cwd=ROOT, env=env, capture_output=True, text=True, timeout=600,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr[-3000:]

    db = home / "ceap.db"
    stored = query(db, "SELECT customer_id, subject_id FROM candidates ORDER BY 1")
    assert stored == [("C1", "P1"), ("C2", "P2"), ("C3", "P3"), ("C4", "P4")]
    letters = query(db, "SELECT stage, reason, row FROM dead_letters ORDER BY reason")
    assert [(stage, reason) for stage, reason, _ in letters] == [
        ("candidates", "line 3: expected 4 columns, got 2"),
        ("candidates", "line 5: expected 4 columns, got 5"),
    ]
    raw = [json.loads(row)["raw"] for _, _, row in letters]
    assert raw == ["C3,C", "C5,P5,2026-11-21T00:00:00Z,0.5,extra"]

    [(status, funnel_text)] = query(db, "SELECT status, funnel FROM runs")
    funnel = json.loads(funnel_text)
    assert status == "ok"
    assert funnel["read"] == 6
    assert funnel["dead_letters"] == {"candidates": 2}
    assert funnel["candidates"] == 4
    assert funnel["adds_up"]


IDS_PROGRAM = """
program: csv_ids
action: review
subject_type: product
source: {{type: csv, options: {{path: {path}}}}}
fields: {{customer_id: cust, subject_id: sku}}
enrich:
  - type: parquet
    key: store
    options: {{path: {lookup}}}
    columns: [bonus]
scoring:
  models: [{{id: rule, type: column, options: {{column: bonus}}}}]
ranking: {{top_n: 100, per: program}}
channels: [{{type: in_app}}]
"""
CUSTOMERS = ["1E5", "2E5", "12.50", "7"]
SUBJECTS = ["1E5", "0012", "12.50", "7"]  # a zero-padded id kept its column as text before
BONUS = [0.1, 0.2, 0.3, 0.4]


def test_ids_and_join_keys_keep_their_text(tmp_path):
    source, lookup = tmp_path / "ids.csv", tmp_path / "stores.parquet"
    lines = [f"{c},{s},{c},{i}" for i, (c, s) in enumerate(zip(CUSTOMERS, SUBJECTS, strict=True))]
    source.write_text("cust,sku,store,n\n" + "\n".join(lines) + "\n")
    # The lookup's keys are text as written, as the source's must be to match them.
    pq.write_table(pa.table({"store": CUSTOMERS, "bonus": BONUS}), lookup)
    program = parse_program(
        read_yaml(IDS_PROGRAM.format(path=source, lookup=lookup)), "csv_ids.yaml"
    )
    db = tmp_path / "ceap.db"
    now = datetime(2026, 11, 25, tzinfo=UTC)
    funnel = run_program(
        program, RunContext(program="csv_ids", now=now, store=f"sqlite:///{db}"), []
    )

    assert query(db, "SELECT reason FROM dead_letters") == []
    stored = query(db, "SELECT customer_id, subject_id, score FROM candidates")
    assert sorted(stored) == sorted(zip(CUSTOMERS, SUBJECTS, BONUS, strict=True))
    assert funnel.read == 4 and funnel.candidates == 4 and funnel.check()


CSV_TABLES_PROGRAM = """
program: csv_tables
action: review
subject_type: product
source: {{type: csv, options: {{path: {path}}}}}
fields: {{customer_id: cust, subject_id: sku}}
enrich:
  - type: csv
    key: customer_id
    on: cust
    options: {{path: {lookup}}}
    columns: [bonus]
filters:
  - type: dedup
    options:
      history: {{type: csv, options: {{path: {history}}}, customer_column: cust, subject_column: sku}}
scoring:
  models: [{{id: rule, type: column, options: {{column: bonus}}}}]
ranking: {{top_n: 100, per: program}}
channels: [{{type: in_app}}]
"""


def test_csv_lookup_and_history_tables_match_ids_on_their_text(tmp_path):
    """An enrichment table and a history table in CSV are keyed by the same text: ``1E5``
    joins ``1E5`` (not ``100000``), and ``12.50`` is not ``12.5``."""
    source, lookup, history = tmp_path / "ids.csv", tmp_path / "lookup.csv", tmp_path / "h.csv"
    lines = [f"{c},{s}" for c, s in zip(CUSTOMERS, SUBJECTS, strict=True)]
    source.write_text("cust,sku\n" + "\n".join(lines) + "\n")
    lookup.write_text(
        "cust,bonus\n" + "\n".join(f"{c},{b}" for c, b in zip(CUSTOMERS, BONUS, strict=True))
    )
    history.write_text("cust,sku\n12.50,12.50\n100000,1E5\n")  # 12.50 acted; 100000 is not 1E5
    text = CSV_TABLES_PROGRAM.format(path=source, lookup=lookup, history=history)
    program = parse_program(read_yaml(text), "csv_tables.yaml")
    db = tmp_path / "ceap.db"
    now = datetime(2026, 11, 25, tzinfo=UTC)
    funnel = run_program(
        program, RunContext(program="csv_tables", now=now, store=f"sqlite:///{db}"), []
    )
    stored = query(db, "SELECT customer_id, subject_id, score FROM candidates")
    expected = [(c, s, b) for c, s, b in zip(CUSTOMERS, SUBJECTS, BONUS, strict=True)]
    assert sorted(stored) == sorted(e for e in expected if e[0] != "12.50")
    assert funnel.read == 4 and funnel.candidates == 3 and funnel.check()
