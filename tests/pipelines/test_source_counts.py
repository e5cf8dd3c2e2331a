"""A connector migration checked from its own output: rows read per source (primaries split
by ``traffic:``, shadows) in the funnel, its summary and the runs table."""

from __future__ import annotations

import json
import sqlite3

from tests.pipelines.test_migration import deliveries, home, program, run, write  # noqa: F401


def test_a_70_30_split_and_a_shadow_count_rows_per_source(tmp_path, home):  # noqa: F811
    data = deliveries(600)
    old = write(tmp_path / "old", data)
    new = write(tmp_path / "new", data.sort_by("product_id"), parts=2)
    lake = write(tmp_path / "lake", data.slice(0, 590), parts=2)
    funnel, _ = run(
        program(f"[{{type: parquet, name: old, traffic: 70, options: {{path: {old}}}}}, "
                f"{{type: parquet, traffic: 30, options: {{path: {new}}}}}, "
                f"{{type: parquet, name: lake, shadow: true, options: {{path: {lake}}}}}]"),
        tmp_path, "split",
    )  # fmt: skip
    sources = funnel.source_summary()
    assert set(sources) == {"old", "1:parquet", "lake"}
    assert sources["old"]["read"] == sources["1:parquet"]["read"] == 600
    assert sources["lake"] == {"read": 590}
    kept_old, kept_new = sources["old"]["kept"], sources["1:parquet"]["kept"]
    assert kept_old + kept_new == funnel.read == 600  # the same rows: each customer once
    assert 0.6 < kept_old / 600 < 0.8  # 120 customers hashed 70/30: roughly
    text = funnel.render()
    assert "source old: kept by its traffic share" in text
    assert "source 1:parquet: rows read" in text and "source lake: rows read" in text

    with sqlite3.connect(tmp_path / "split.db") as con:
        (recorded,) = con.execute("SELECT funnel FROM runs WHERE run_id = 'split'").fetchone()
    assert json.loads(recorded)["sources"] == sources


def test_one_primary_and_a_shadow_record_both_reads(tmp_path, home):  # noqa: F811
    data = deliveries()
    old = write(tmp_path / "old", data)
    lake = write(tmp_path / "lake", data.slice(0, 250), parts=2)
    funnel, _ = run(
        program(f"[{{type: parquet, options: {{path: {old}}}}}, "
                f"{{type: parquet, name: lake, shadow: true, options: {{path: {lake}}}}}]"),
        tmp_path, "shadowed",
    )  # fmt: skip
    assert funnel.source_summary() == {"0:parquet": {"read": 300}, "lake": {"read": 250}}
    assert funnel.as_dict()["sources"] == funnel.source_summary()
