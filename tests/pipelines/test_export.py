"""The export graph: a store with known rows, exported for one day, read back by DuckDB with
Hive partitioning; re-exports replace the day (locally by rename, on object stores by
overwrite + delete of stale parts) and never duplicate."""

from __future__ import annotations

import json

import duckdb
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from pipelines import export
from pipelines.export import SCHEMAS, build_pipeline, run_export
from stores.base import CANDIDATE_COLUMNS
from stores.spec import open_store

DAY = "2026-11-01"


def _candidate(program: str, customer: str, subject: str, created: str, arm: str) -> dict:
    return {
        "program": program, "customer_id": customer, "subject_type": "product",
        "subject_id": subject, "action": "review", "context": json.dumps({"region": "eu"}),
        "score": 0.5, "model_id": f"{program}_{arm}", "treatment": arm, "created_at": created,
        "expires_at": "2026-12-01T00:00:00Z", "deliver_after": created, "status": "live",
    }  # fmt: skip


@pytest.fixture
def spec(tmp_path) -> str:
    return seeded_store(tmp_path)


def seeded_store(directory) -> str:
    """A store with, for DAY: reviews 3 candidates (+1 the day before), surveys 2; outbox rows
    queued on DAY, one queued the day before but sent on DAY; responses on DAY and after."""
    spec = "sqlite:///" + str(directory / "ceap.db")
    store = open_store(spec)
    rows = [
        _candidate("reviews", "C1", "P1", f"{DAY}T01:00:00Z", "control"),
        _candidate("reviews", "C2", "P2", f"{DAY}T01:00:00Z", "propensity"),
        _candidate("reviews", "C3", "P3", f"{DAY}T23:59:59Z", "propensity"),
        _candidate("reviews", "C0", "P0", "2026-10-31T23:59:59Z", "control"),
        _candidate("surveys", "C1", "S1", f"{DAY}T05:00:00Z", "control"),
        _candidate("surveys", "C4", "S4", f"{DAY}T05:00:00Z", "control"),
    ]
    store.upsert_candidates(pa.table({c: [r[c] for r in rows] for c in CANDIDATE_COLUMNS}))
    outbox = [
        ("reviews", "C1", "P1", "email", f"{DAY}T01:00:00Z"),
        ("reviews", "C1", "P1", "in_app", f"{DAY}T01:00:00Z"),
        ("reviews", "C2", "P2", "email", f"{DAY}T01:00:00Z"),
        ("reviews", "C0", "P0", "email", "2026-10-31T23:59:59Z"),  # sent on DAY below
        ("surveys", "C4", "S4", "sms", "2026-10-30T00:00:00Z"),  # neither queued nor sent on DAY
    ]
    store.enqueue_outbox(
        pa.table({
            "program": [o[0] for o in outbox], "customer_id": [o[1] for o in outbox],
            "subject_id": [o[2] for o in outbox], "channel": [o[3] for o in outbox],
            "send_after": [o[4] for o in outbox], "status": ["pending"] * len(outbox),
            "attempts": [0] * len(outbox), "idempotency_key": [f"k{i}" for i in range(len(outbox))],
            "reason": [None] * len(outbox), "template": [None] * len(outbox),
            "shadow": [0] * len(outbox), "created_at": [o[4] for o in outbox],
        })
    )  # fmt: skip
    con = store.connection
    con.execute(
        "UPDATE outbox SET status = 'sent', sent_at = ? WHERE idempotency_key = 'k3'",
        (f"{DAY}T10:00:00Z",),
    )
    con.execute(
        "UPDATE outbox SET status = 'shadowed', reason = 'shadow: to c1@example.com: hi' "
        "WHERE idempotency_key = 'k1'"
    )
    con.executemany(
        "INSERT INTO responses VALUES (?, ?, ?, ?, ?, ?5)",  # id: its time
        [
            ("reviews", "C1", "P1", '"5 stars"', f"{DAY}T12:00:00Z"),
            ("surveys", "C4", "S4", "null", f"{DAY}T13:00:00Z"),
            ("reviews", "C2", "P2", "null", "2026-11-02T00:00:00Z"),  # the next day
        ],
    )
    store.close()
    return spec


def counts(out, table: str) -> dict[tuple[str, str], int]:
    rows = duckdb.sql(
        f"SELECT CAST(dt AS VARCHAR), program, count(*) FROM read_parquet("
        f"'{out}/{table}/*/*/*.parquet', hive_partitioning = true) GROUP BY ALL"
    ).fetchall()
    return {(dt, program): n for dt, program, n in rows}


def test_export_reads_back_with_hive_partitioning(spec, tmp_path):
    out = tmp_path / "out"
    totals = run_export(DAY, str(out), spec)

    assert totals == {"candidates": 5, "outbox": 4, "responses": 2, "events": 0}
    assert counts(out, "candidates") == {(DAY, "reviews"): 3, (DAY, "surveys"): 2}
    assert counts(out, "outbox") == {(DAY, "reviews"): 4}
    assert counts(out, "responses") == {(DAY, "reviews"): 1, (DAY, "surveys"): 1}
    assert not (out / "_staging").exists()

    part = out / "candidates" / f"dt={DAY}" / "program=reviews" / "part-00000.parquet"
    assert pq.read_schema(part).remove_metadata() == SCHEMAS["candidates"]  # no dt/program inside
    arms = duckdb.sql(
        f"SELECT customer_id, model_id, treatment, strftime(created_at AT TIME ZONE 'UTC', "
        f"'%Y-%m-%dT%H:%M:%SZ') FROM read_parquet('{out}/candidates/*/*/*.parquet', "
        "hive_partitioning = true) WHERE program = 'reviews' ORDER BY 1"
    ).fetchall()
    assert arms == [
        ("C1", "reviews_control", "control", f"{DAY}T01:00:00Z"),
        ("C2", "reviews_propensity", "propensity", f"{DAY}T01:00:00Z"),
        ("C3", "reviews_propensity", "propensity", f"{DAY}T23:59:59Z"),
    ]
    outbox = duckdb.sql(
        f"SELECT idempotency_key, status, reason, shadow, treatment FROM read_parquet("
        f"'{out}/outbox/*/*/*.parquet', hive_partitioning = true) ORDER BY 1"
    ).fetchall()
    assert outbox[1] == ("k1", "shadowed", "shadow", False, "control")  # no recipient exported
    assert outbox[3] == ("k3", "sent", None, False, "control")
    responses = duckdb.sql(
        f"SELECT customer_id, response, treatment FROM '{out}/responses/*/*/*.parquet' ORDER BY 1"
    ).fetchall()
    assert responses == [("C1", '"5 stars"', "control"), ("C4", "null", "control")]


def test_reexport_replaces_the_day_without_duplicates(spec, tmp_path):
    out = tmp_path / "out"
    run_export(DAY, str(out), spec)
    run_export("2026-10-31", str(out), spec)  # another day, left alone below
    before_other = counts(out, "candidates")[("2026-10-31", "reviews")]

    store = open_store(spec)
    store.connection.execute("DELETE FROM candidates WHERE program = 'surveys'")
    store.connection.execute("DELETE FROM responses")
    store.close()
    run_export(DAY, str(out), spec)
    run_export(DAY, str(out), spec)

    assert counts(out, "candidates") == {(DAY, "reviews"): 3, ("2026-10-31", "reviews"): 1}
    assert before_other == 1
    assert not (out / "candidates" / f"dt={DAY}" / "program=surveys").exists()
    assert not (out / "responses" / f"dt={DAY}").exists()  # nothing that day any more
    assert sorted(p.name for p in out.iterdir()) == ["candidates", "outbox", "responses"]


def test_object_store_strategy_overwrites_then_deletes_stale_parts(spec, tmp_path, monkeypatch):
    """s3:// and gs:// cannot rename a prefix: the commit copies over and deletes leftovers.
    The same code path, forced on a local directory."""
    monkeypatch.setattr(export, "_is_local", lambda path: False)
    out = tmp_path / "out"
    run_export(DAY, str(out), spec)
    stale = out / "candidates" / f"dt={DAY}" / "program=gone" / "part-00000.parquet"
    stale.parent.mkdir()
    stale.write_bytes(
        (out / "candidates" / f"dt={DAY}" / "program=surveys" / "part-00000.parquet").read_bytes()
    )
    run_export(DAY, str(out), spec)

    assert counts(out, "candidates") == {(DAY, "reviews"): 3, (DAY, "surveys"): 2}
    assert not stale.exists()


def test_graph_is_built_without_running_and_bad_dates_fail_early(tmp_path):
    p, staging = build_pipeline(DAY, str(tmp_path), "sqlite:///" + str(tmp_path / "x.db"))
    labels = {t.full_label for t in p.transforms_stack[0].parts}
    assert {"Tables", "ReadDay", "ByPartition", "WriteParquet", "Commit"} <= labels
    assert staging.startswith(str(tmp_path / "_staging"))
    with pytest.raises(ValueError):
        build_pipeline("2026-13-01", str(tmp_path), "sqlite")
    assert export.main(["--date", "yesterday", "--output", str(tmp_path)]) == 2


def test_responses_carry_the_candidates_arm_or_nulls_when_it_is_gone(spec, tmp_path):
    store = open_store(spec)
    store.connection.execute("DELETE FROM candidates WHERE customer_id = 'C4'")  # surveys S4
    store.close()
    out = tmp_path / "out"
    run_export(DAY, str(out), spec)

    part = out / "responses" / f"dt={DAY}" / "program=reviews" / "part-00000.parquet"
    assert pq.read_schema(part).remove_metadata() == SCHEMAS["responses"]
    rows = duckdb.sql(
        f"SELECT program, customer_id, subject_id, model_id, treatment FROM read_parquet("
        f"'{out}/responses/*/*/*.parquet', hive_partitioning = true) ORDER BY 1"
    ).fetchall()
    assert rows == [
        ("reviews", "C1", "P1", "reviews_control", "control"),
        ("surveys", "C4", "S4", None, None),  # the response stays, its arm is unknown
    ]
