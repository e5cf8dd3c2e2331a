"""The Athena connector against moto's Athena + S3 in server mode, on loopback.

moto does not run SQL: each started query takes the next result queued through
``/moto-api/static/athena/query-results`` and moto writes it to the output location as
CSV, as Athena does. A SELECT's first row is its column labels, in both places.
"""

from __future__ import annotations

import datetime as dt
import json
import urllib.request
from decimal import Decimal

import apache_beam as beam
import boto3
import pyarrow as pa
import pytest
from apache_beam.testing.test_pipeline import TestPipeline
from apache_beam.testing.util import assert_that, equal_to
from moto.athena.responses import AthenaResponse
from moto.server import ThreadedMotoServer

from ceap.errors import ConnectorError
from ceap.plugins import connectors
from connectors.athena import AthenaConnector, athena_literal

REGION = "eu-west-3"  # a region no other test uses: moto's result queue is per region
BUCKET = "ceap-athena-results"
QUERY = "SELECT * FROM deliveries WHERE region = ? AND delivered_at >= ?"

COLUMNS = [
    ("customer_id", "varchar"),
    ("orders", "bigint"),
    ("price", "double"),
    ("opted_out", "boolean"),
    ("delivered_at", "timestamp"),
    ("day", "date"),
    ("amount", "decimal"),
]
ROWS = [
    ["c1", "3", "9.5", "true", "2024-05-01 10:00:00.000", "2024-05-01", "12.34"],
    ["c2", None, "1.25", "false", "2024-05-02 11:30:00.500", "2024-05-02", "0.10"],
    ["", "7", None, None, None, None, None],
]


@pytest.fixture(scope="module")
def moto_url():
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    yield f"http://{host}:{port}"
    server.stop()


@pytest.fixture
def aws(moto_url, monkeypatch):
    for name, value in {
        "AWS_ACCESS_KEY_ID": "testing",
        "AWS_SECRET_ACCESS_KEY": "testing",
        "AWS_SESSION_TOKEN": "testing",
        "AWS_DEFAULT_REGION": REGION,
        "CEAP_AWS_ENDPOINT_URL": moto_url,
    }.items():
        monkeypatch.setenv(name, value)
    monkeypatch.delenv("AWS_PROFILE", raising=False)
    s3 = boto3.client("s3", endpoint_url=moto_url, region_name=REGION)
    buckets = {b["Name"] for b in s3.list_buckets()["Buckets"]}
    if BUCKET not in buckets:
        s3.create_bucket(Bucket=BUCKET, CreateBucketConfiguration={"LocationConstraint": REGION})
    return moto_url


def _post(url: str, path: str, body: dict) -> None:
    request = urllib.request.Request(
        url + path, json.dumps(body).encode(), {"Content-Type": "application/json"}
    )
    with urllib.request.urlopen(request) as response:
        assert response.status in (200, 201)


def queue_result(url: str, columns=COLUMNS, rows=ROWS) -> None:
    """Queues one query result; the label row comes first, as Athena returns it."""

    def row(values):
        return {"Data": [{} if v is None else {"VarCharValue": v} for v in values]}

    info = [{"Name": n, "Label": n, "Type": t} for n, t in columns]
    for col in info:
        if col["Type"] == "decimal":
            col.update(Precision=10, Scale=2)
    result = {"rows": [row([n for n, _ in columns])] + [row(r) for r in rows], "column_info": info}
    _post(url, "/moto-api/static/athena/query-results", {"region": REGION, "results": [result]})


def connector(**extra) -> AthenaConnector:
    options = {
        "query": QUERY,
        "database": "warehouse",
        "output": f"s3://{BUCKET}/athena/",
        "parameters": ["north", dt.date(2024, 5, 1)],
        "poll_seconds": 0.01,
    }
    return AthenaConnector({**options, **extra})


EXPECTED_SCHEMA = pa.schema(
    [
        ("customer_id", pa.string()),
        ("orders", pa.int64()),
        ("price", pa.float64()),
        ("opted_out", pa.bool_()),
        ("delivered_at", pa.timestamp("us")),
        ("day", pa.date32()),
        ("amount", pa.decimal128(10, 2)),
    ]
)
EXPECTED_ROWS = [
    {
        "customer_id": "c1",
        "orders": 3,
        "price": 9.5,
        "opted_out": True,
        "delivered_at": dt.datetime(2024, 5, 1, 10),
        "day": dt.date(2024, 5, 1),
        "amount": Decimal("12.34"),
    },
    {
        "customer_id": "c2",
        "orders": None,
        "price": 1.25,
        "opted_out": False,
        "delivered_at": dt.datetime(2024, 5, 2, 11, 30, 0, 500_000),
        "day": dt.date(2024, 5, 2),
        "amount": Decimal("0.10"),
    },
    dict.fromkeys(EXPECTED_SCHEMA.names) | {"customer_id": "", "orders": 7},
]


def test_registered_by_name():
    assert connectors.get("athena") is AthenaConnector


def test_parameters_are_execution_parameters_not_sql(aws):
    queue_result(aws)
    table = connector().read_table()
    athena = boto3.client("athena", endpoint_url=aws, region_name=REGION)
    last = athena.list_query_executions()["QueryExecutionIds"][-1]
    execution = athena.get_query_execution(QueryExecutionId=last)["QueryExecution"]
    assert execution["Query"] == QUERY  # placeholders, not values
    assert "north" not in execution["Query"]
    assert execution["ExecutionParameters"] == ["'north'", "DATE '2024-05-01'"]
    assert execution["QueryExecutionContext"] == {"Database": "warehouse"}
    assert table.num_rows == 3


def test_rows_come_back_typed_from_the_csv_result(aws):
    queue_result(aws)
    batches = list(connector().read_split(None))
    assert all(isinstance(b, pa.RecordBatch) for b in batches)
    table = pa.Table.from_batches(batches)
    assert table.schema == EXPECTED_SCHEMA
    assert table.to_pylist() == EXPECTED_ROWS


def test_pages_get_query_results_when_there_is_no_csv_object(aws, caplog):
    queue_result(aws)
    with caplog.at_level("INFO", logger="connectors.athena"):
        table = connector(output=None).read_table()  # primary workgroup: no output location
    assert "reading results through GetQueryResults" in caplog.text
    assert table.schema == EXPECTED_SCHEMA
    assert table.to_pylist() == EXPECTED_ROWS


def test_unreadable_result_object_falls_back_to_paging(aws, caplog):
    queue_result(aws)
    table = connector(output="s3://no-such-bucket/x/").read_table()
    assert "cannot read athena result s3://no-such-bucket/x/" in caplog.text
    assert table.to_pylist() == EXPECTED_ROWS


def test_column_selection(aws):
    queue_result(aws)
    table = connector().read_table(columns=["price", "customer_id", "not_there"])
    assert table.column_names == ["price", "customer_id"]  # in the order asked for
    queue_result(aws)
    with pytest.raises(ConnectorError, match="none of the columns"):
        connector().read_table(columns=["not_there"])


def test_failed_query_raises_with_athena_reason(aws, monkeypatch):
    original = AthenaResponse.get_query_execution

    def failed(self):
        body = json.loads(original(self))
        body["QueryExecution"]["Status"].update(
            State="FAILED", StateChangeReason="TABLE_NOT_FOUND: line 1:15: deliveries"
        )
        return json.dumps(body)

    monkeypatch.setattr(AthenaResponse, "get_query_execution", failed)
    with pytest.raises(ConnectorError, match=r"failed: TABLE_NOT_FOUND: line 1:15: deliveries"):
        connector().read_table()


def test_timeout_cancels_the_query(aws):
    transition = {"model_name": "athena::execution"}
    _post(
        aws,
        "/moto-api/state-manager/set-transition",
        transition | {"transition": {"progression": "manual", "times": 10_000}},
    )
    try:
        with pytest.raises(ConnectorError, match="timeout_seconds"):
            connector(timeout_seconds=0.05).read_table()
    finally:
        _post(aws, "/moto-api/state-manager/unset-transition", transition)
    athena = boto3.client("athena", endpoint_url=aws, region_name=REGION)
    last = athena.list_query_executions()["QueryExecutionIds"][-1]
    status = athena.get_query_execution(QueryExecutionId=last)["QueryExecution"]["Status"]
    assert status["State"] == "CANCELLED"


def test_read_in_a_beam_pipeline(aws):
    queue_result(aws)
    source = connector(endpoint_url=aws)  # travels with the pickled connector
    with TestPipeline() as p:
        batches = p | "Athena" >> source.read()
        rows = batches | beam.Map(lambda b: b.num_rows) | beam.CombineGlobally(sum)
        types = batches | beam.Map(lambda b: str(b.schema.field("orders").type))
        assert_that(rows, equal_to([3]), label="Rows")
        assert_that(types, equal_to(["int64"]), label="Types")


def test_options_are_validated():
    with pytest.raises(ValueError, match="s3://"):
        AthenaConnector({"query": "SELECT 1", "output": "/tmp/x"})
    with pytest.raises(ValueError, match="extra"):
        AthenaConnector({"query": "SELECT 1", "sql": "SELECT 2"})


def test_literals():
    assert athena_literal("O'Brien") == "'O''Brien'"
    assert athena_literal(True) == "true"
    assert athena_literal(42) == "42"
    assert athena_literal(0.5) == "0.5"
    assert athena_literal(dt.datetime(2024, 1, 2, 3, 4, 5)) == "TIMESTAMP '2024-01-02 03:04:05'"
