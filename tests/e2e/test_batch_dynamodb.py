"""The batch graph writing to DynamoDB (moto's server on loopback) stores exactly what it
stores in the embedded SQLite default."""

from __future__ import annotations

from uuid import uuid4

import pytest
from apache_beam.options.pipeline_options import PipelineOptions

from ceap.context import RunContext
from configs.schema import parse_program, read_yaml
from pipelines.batch import build_pipeline
from sample import generate_warehouse
from stores.spec import open_store
from tests.e2e.test_batch_e2e import AS_OF, PROGRAM

pytestmark = pytest.mark.integration


def run(program, store: str) -> None:
    ctx = RunContext(program=program.program, now=AS_OF, store=store)
    build_pipeline(program, ctx, PipelineOptions([])).run().wait_until_finish()


def keyed(table, *columns: str) -> set[tuple]:
    return set(zip(*(table.column(c).to_pylist() for c in columns), strict=True))


def test_dynamodb_store_holds_what_sqlite_holds(tmp_path, moto_endpoint):
    warehouse = tmp_path / "wh"
    generate_warehouse(warehouse, rows=1_500, seed=3, as_of=AS_OF)
    program = parse_program(read_yaml(PROGRAM.format(wh=warehouse, top_n=100)))
    sqlite_spec = "sqlite:///" + str(tmp_path / "ceap.db")
    dynamo_spec = f"dynamodb://e2e{uuid4().hex[:8]}_?region=us-east-1&endpoint_url={moto_endpoint}"

    run(program, sqlite_spec)
    run(program, dynamo_spec)

    sqlite, dynamo = open_store(sqlite_spec), open_store(dynamo_spec)
    cand = ("customer_id", "subject_id", "score", "deliver_after", "context", "expires_at")
    assert len(keyed(sqlite.table("candidates"), *cand)) == 100
    assert keyed(dynamo.table("candidates"), *cand) == keyed(sqlite.table("candidates"), *cand)
    out = ("customer_id", "subject_id", "channel", "send_after", "status", "idempotency_key")
    assert keyed(dynamo.table("outbox"), *out) == keyed(sqlite.table("outbox"), *out)
    dead = ("stage", "reason", "origin")
    assert keyed(dynamo.table("dead_letters"), *dead) == keyed(sqlite.table("dead_letters"), *dead)
