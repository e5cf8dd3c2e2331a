"""Connector migrations: the shadow source's report, and moving traffic between sources."""

from __future__ import annotations

import json
import sqlite3
from datetime import UTC, datetime
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from ceap.context import RunContext
from configs.schema import parse_program, read_yaml
from pipelines.batch import run_program
from pipelines.migration import compare, fingerprint

NOW = datetime(2026, 11, 1, tzinfo=UTC)
KEYS = ["customer_id", "product_id"]


def deliveries(n: int = 300) -> pa.Table:
    return pa.table(
        {
            "customer_id": [f"c{i % 120:03d}" for i in range(n)],
            "product_id": [f"p{i}" for i in range(n)],
            "delivered_at": pa.array(
                [int(NOW.timestamp() * 1e6) - i * 3_600_000_000 for i in range(n)],
                pa.timestamp("us", "UTC"),
            ),
            "region": ["eu" if i % 4 else "us" for i in range(n)],
            "engagement_score": [(i * 7 % 100) / 100 for i in range(n)],
        }
    )


def write(folder: Path, table: pa.Table, parts: int = 3) -> str:
    folder.mkdir(parents=True)
    step = -(-table.num_rows // parts)
    for i in range(parts):
        pq.write_table(table.slice(i * step, step), folder / f"part-{i}.parquet")
    return str(folder)


def program(sources: str):
    return parse_program(
        read_yaml(f"""
program: reviews
action: review
subject_type: product
source: {sources}
fields: {{customer_id: customer_id, subject_id: product_id, event_time: delivered_at, context: [region]}}
filters:
  - {{name: engaged, type: expression, options: {{keep: "engagement_score >= 0.2"}}}}
scoring:
  models: [{{id: rule, type: column, options: {{column: engagement_score}}}}]
ranking: {{top_n: 100, per: program}}
channels: [{{type: in_app}}]
"""),
        "reviews.yaml",
    )


def run(config, tmp_path: Path, name: str):
    db = tmp_path / f"{name}.db"
    ctx = RunContext(program="reviews", now=NOW, store=f"sqlite:///{db}", run_id=name)
    funnel = run_program(config, ctx, [])
    with sqlite3.connect(db) as con:
        rows = con.execute(
            "SELECT customer_id, subject_id, score, model_id, treatment, context, deliver_after "
            "FROM candidates ORDER BY customer_id, subject_id"
        ).fetchall()
    return funnel, rows


# --- the comparison itself -------------------------------------------------------------------


def test_compare_finds_each_kind_of_injected_difference():
    old = deliveries(50)
    new = old.slice(1)  # p0 lost
    new = new.set_column(
        new.schema.get_field_index("region"), "region",
        pa.array(["xx" if p == "p7" else r for p, r in zip(new["product_id"].to_pylist(), new["region"].to_pylist(), strict=True)]),
    )  # fmt: skip
    extra = old.slice(0, 1).set_column(1, "product_id", pa.array(["p999"]))
    new = pa.concat_tables([new, extra])
    new = new.set_column(4, "engagement_score", pa.array(new["engagement_score"].to_numpy() * 1.0))
    new = new.append_column("shiny", pa.array([1] * new.num_rows))

    types = {
        "primary": {f.name: str(f.type) for f in old.schema},
        "shadow": {f.name: str(f.type) for f in new.schema},
    }
    report = compare(
        [fingerprint(b, KEYS) for b in old.to_batches()],
        [fingerprint(b, KEYS) for b in new.to_batches()],
        types,
    )
    assert report["rows"] == {"primary": 50, "shadow": 50, "difference": 0}
    assert report["keys"]["only_primary"] == 1 and report["keys"]["examples_only_primary"] == [
        ["c000", "p0"]
    ]
    assert report["keys"]["only_shadow"] == 1 and report["keys"]["examples_only_shadow"] == [
        ["c000", "p999"]
    ]
    diffs = report["columns"]["value_differences"]
    assert [(d["column"], d["rows"], d["examples"]) for d in diffs] == [
        ("region", 1, [["c007", "p7"]])
    ]
    assert report["columns"]["only_shadow"] == ["shiny"]
    assert report["identical"] is False


def test_compare_of_the_same_data_read_differently_is_identical():
    t = deliveries(40)
    report = compare(
        [fingerprint(b, KEYS) for b in t.to_batches(max_chunksize=7)],
        [fingerprint(t.to_batches()[0], KEYS)],
        {
            "primary": {f.name: str(f.type) for f in t.schema},
            "shadow": {f.name: str(f.type) for f in t.schema},
        },
    )
    assert report["identical"] and report["keys"]["overlap"] == 1.0


# --- in the batch graph ----------------------------------------------------------------------


@pytest.fixture
def home(tmp_path, monkeypatch) -> Path:
    monkeypatch.setenv("CEAP_HOME", str(tmp_path / "home"))
    return tmp_path / "home"


def test_a_shadow_source_is_read_compared_and_never_written(tmp_path, home, capsys):
    data = deliveries()
    old = write(tmp_path / "old", data)
    changed = data.set_column(
        3,
        "region",
        pa.array(["mars" if i < 10 else r for i, r in enumerate(data["region"].to_pylist())]),
    )
    new = write(tmp_path / "new", changed.slice(0, 290), parts=2)  # 10 rows lost, 10 changed
    alone, expected = run(
        program(f"{{type: parquet, options: {{path: {old}}}}}"), tmp_path, "alone"
    )
    shadowed, got = run(
        program(f"[{{type: parquet, options: {{path: {old}}}}}, "
                f"{{type: parquet, name: lake, shadow: true, options: {{path: {new}}}}}]"),
        tmp_path, "shadowed",
    )  # fmt: skip
    assert got == expected  # the shadow changes nothing that is stored
    assert shadowed.shadow_read == 290 and shadowed.read == alone.read == 300

    report = json.loads((home / "reports" / "migration-reviews-shadowed.json").read_text())
    assert report["shadow"] == "lake" and report["identical"] is False
    assert report["rows"] == {"primary": 300, "shadow": 290, "difference": -10}
    assert report["keys"]["only_primary"] == 10 and report["keys"]["only_shadow"] == 0
    assert [(d["column"], d["rows"]) for d in report["columns"]["value_differences"]] == [
        ("region", 10)
    ]
    out = capsys.readouterr().out
    assert "migration [reviews] shadow lake vs primary: DIFFERENT" in out
    assert "region: 10 keys differ" in out


@pytest.mark.parametrize("shares", [(50, 50), (10, 90), (0, 100)])
def test_moving_traffic_to_a_source_with_the_same_data_changes_no_candidate(tmp_path, home, shares):
    data = deliveries()
    old = write(tmp_path / "old", data)
    new = write(tmp_path / "new", data.sort_by("product_id"), parts=5)  # same rows, other files
    _, expected = run(program(f"{{type: parquet, options: {{path: {old}}}}}"), tmp_path, "before")
    a, b = shares
    funnel, got = run(
        program(f"[{{type: parquet, traffic: {a}, options: {{path: {old}}}}}, "
                f"{{type: parquet, traffic: {b}, options: {{path: {new}}}}}]"),
        tmp_path, "after",
    )  # fmt: skip
    assert len(expected) == 100 and got == expected
    assert funnel.read == 300 and funnel.check()


def test_the_report_of_identical_sources_says_so(tmp_path, home):
    data = deliveries()
    old = write(tmp_path / "old", data)
    new = write(tmp_path / "new", data, parts=1)
    config = program(
        f"[{{type: parquet, options: {{path: {old}}}}}, "
        f"{{type: parquet, shadow: true, options: {{path: {new}}}}}]"
    )
    run(config, tmp_path, "same")
    report = json.loads((home / "reports" / "migration-reviews-same.json").read_text())
    assert report["identical"] is True, report


def test_a_report_is_named_for_the_run_it_belongs_to(tmp_path, home):
    """A run without a given id gets one when it starts; its report carries that id, in its
    name and body (README: ``migration-<program>-<run>.json``), to join with ``runs``."""
    old = write(tmp_path / "old", deliveries())
    config = program(
        f"[{{type: parquet, options: {{path: {old}}}}}, "
        f"{{type: parquet, shadow: true, options: {{path: {old}}}}}]"
    )
    db = tmp_path / "run.db"
    run_program(config, RunContext(program="reviews", now=NOW, store=f"sqlite:///{db}"), [])
    with sqlite3.connect(db) as con:
        ((run_id,),) = con.execute("SELECT run_id FROM runs").fetchall()
    report = json.loads((home / "reports" / f"migration-reviews-{run_id}.json").read_text())
    assert report["run_id"] == run_id
