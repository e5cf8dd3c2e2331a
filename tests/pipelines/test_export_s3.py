"""The export to s3:// for real: moto's S3 server on loopback, Beam's own S3 filesystem
(boto3), the CLI flags a user types. The objects are listed and downloaded with boto3 and read
with pyarrow; their row counts per (table, dt, program) are compared with the store's own."""

from __future__ import annotations

import io
import os
import subprocess
import sys
import time
from pathlib import Path

import pyarrow.parquet as pq
import pytest

from pipelines import export
from stores.spec import open_store
from tests.pipelines.test_export import DAY, _candidate

pytestmark = pytest.mark.integration

ROOT = Path(__file__).resolve().parents[2]
PREFIX = "exports/ceap"


@pytest.fixture
def spec(export_store) -> str:
    return export_store


@pytest.fixture
def s3(s3_bucket):
    return s3_bucket


def s3_flags(endpoint: str) -> list[str]:
    """The Beam S3 options, as documented in docs/export.md."""
    return [
        "--s3_endpoint_url", endpoint, "--s3_access_key_id", "testing",
        "--s3_secret_access_key", "testing", "--s3_region_name", "us-east-1",
    ]  # fmt: skip


def keys(client, bucket: str) -> list[str]:
    pages = client.get_paginator("list_objects_v2").paginate(Bucket=bucket)
    return sorted(o["Key"] for page in pages for o in page.get("Contents", []))


def exported(client, bucket: str) -> dict[tuple[str, str, str], int]:
    """Rows per (table, dt, program) of the Parquet objects, read back from S3; every object
    must be a part file at the Hive path."""
    out = {}
    for key in keys(client, bucket):
        rel = key.removeprefix(PREFIX + "/")
        table, dt, program, name = rel.split("/")
        assert (dt.startswith("dt="), program.startswith("program="), name) == (
            True, True, export.PART,
        ), key  # fmt: skip
        body = client.get_object(Bucket=bucket, Key=key)["Body"].read()
        data = pq.read_table(io.BytesIO(body))
        assert data.schema.remove_metadata() == export.SCHEMAS[table]
        out[(table, dt.removeprefix("dt="), program.removeprefix("program="))] = data.num_rows
    return out


def store_counts(spec: str, day: str) -> dict[tuple[str, str, str], int]:
    """What the store holds for the day (docs/architecture.md, "CLI"), counted with SQL of its own."""
    low, high = export.day_bounds(day)
    queries = {
        "candidates": "SELECT program, count(*) FROM candidates WHERE created_at >= ?1 "
        "AND created_at < ?2 GROUP BY 1",
        "outbox": "SELECT program, count(*) FROM outbox WHERE (created_at >= ?1 AND "
        "created_at < ?2) OR (sent_at >= ?1 AND sent_at < ?2) GROUP BY 1",
        "responses": "SELECT program, count(*) FROM responses WHERE created_at >= ?1 "
        "AND created_at < ?2 GROUP BY 1",
    }
    store = open_store(spec)
    try:
        return {
            (table, day, program): n
            for table, sql in queries.items()
            for program, n in store.connection.execute(sql, (low, high)).fetchall()
        }
    finally:
        store.close()


def run(spec: str, uri: str, *flags: str) -> int:
    return export.main(["--date", DAY, "--output", uri, "--store", spec, *flags])


def test_export_to_s3_matches_the_store(spec, s3, moto_endpoint, capsys):
    client, bucket = s3
    t0 = time.perf_counter()
    assert run(spec, f"s3://{bucket}/{PREFIX}", *s3_flags(moto_endpoint)) == 0
    seconds = time.perf_counter() - t0

    expected = store_counts(spec, DAY)
    assert expected == {
        ("candidates", DAY, "reviews"): 3, ("candidates", DAY, "surveys"): 2,
        ("outbox", DAY, "reviews"): 4,
        ("responses", DAY, "reviews"): 1, ("responses", DAY, "surveys"): 1,
    }  # fmt: skip
    assert exported(client, bucket) == expected  # and nothing else: no _staging left
    printed = capsys.readouterr().out
    assert (
        f"s3://{bucket}/{PREFIX}/candidates/dt={DAY}/program=reviews/part-00000.parquet" in printed
    )
    assert "candidates: 5 rows, outbox: 4 rows, responses: 2 rows" in printed
    print(f"export of {DAY} to moto s3: {seconds:.2f}s")


@pytest.mark.slow
def test_reexport_to_s3_replaces_the_day(spec, s3, moto_endpoint):
    """Changed data, a stale part of a program that is gone and folder markers (the S3
    console's "Create folder"): the re-export leaves exactly the store's day, and other days
    alone."""
    client, bucket = s3
    uri = f"s3://{bucket}/{PREFIX}"
    assert run(spec, uri, *s3_flags(moto_endpoint)) == 0
    assert export.main(["--date", "2026-10-31", "--output", uri, "--store", spec,
                        *s3_flags(moto_endpoint)]) == 0  # fmt: skip
    day = f"{PREFIX}/candidates/dt={DAY}"
    stale = f"{day}/program=gone/{export.PART}"
    client.copy_object(Bucket=bucket, Key=stale,
                       CopySource={"Bucket": bucket, "Key": f"{day}/program=surveys/{export.PART}"})  # fmt: skip
    markers = [f"{day}/", f"{day}/program=reviews/"]
    for marker in markers:
        client.put_object(Bucket=bucket, Key=marker, Body=b"")

    store = open_store(spec)
    store.connection.execute("DELETE FROM candidates WHERE program = 'surveys'")
    store.connection.execute("DELETE FROM responses")
    store.upsert_candidates(
        _table([_candidate("reviews", "C9", "P9", f"{DAY}T08:00:00Z", "control")])
    )
    store.close()
    assert run(spec, uri, *s3_flags(moto_endpoint)) == 0

    left = [k for k in keys(client, bucket) if not k.endswith("/")]
    assert stale not in left
    for marker in markers:  # markers are empty "directories": kept, never taken for data
        client.delete_object(Bucket=bucket, Key=marker)
    assert exported(client, bucket) == {
        **store_counts(spec, DAY), **store_counts(spec, "2026-10-31"),
    }  # fmt: skip
    assert exported(client, bucket) == {
        ("candidates", DAY, "reviews"): 4, ("outbox", DAY, "reviews"): 4,
        ("candidates", "2026-10-31", "reviews"): 1, ("outbox", "2026-10-31", "reviews"): 1,
    }  # fmt: skip


@pytest.mark.slow
def test_cli_export_to_s3_with_the_endpoint_from_the_environment(spec, s3, moto_endpoint):
    """``python run.py export`` as a user runs it: here with ``AWS_ENDPOINT_URL`` (boto3 reads
    it when no ``--s3_endpoint_url`` is given) and the credentials of the environment."""
    client, bucket = s3
    env = {
        **os.environ,
        "AWS_ENDPOINT_URL": moto_endpoint,
        "CEAP_HOME": str(Path(spec.removeprefix("sqlite:///")).parent),
    }
    proc = subprocess.run(
        [sys.executable, "run.py", "export", "--date", DAY, "--output", f"s3://{bucket}/{PREFIX}",
         "--store", spec],
        cwd=ROOT, env=env, capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    assert exported(client, bucket) == store_counts(spec, DAY)


def test_cli_reports_a_missing_bucket(spec, moto_endpoint, capsys):
    assert run(spec, "s3://no-such-bucket/x", *s3_flags(moto_endpoint)) == 1
    assert "export failed" in capsys.readouterr().err


def _table(rows: list[dict]):
    import pyarrow as pa

    from stores.base import CANDIDATE_COLUMNS

    return pa.table({c: [r[c] for r in rows] for c in CANDIDATE_COLUMNS})
