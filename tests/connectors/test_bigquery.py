"""The BigQuery connector: options, the graph without the gcp extra, and the conversion
of ReadFromBigQuery's row dicts to Arrow batches (no Google Cloud access needed)."""

from __future__ import annotations

import datetime as dt
import sys
from decimal import Decimal

import apache_beam as beam
import pyarrow as pa
import pydantic
import pytest
from apache_beam.testing.test_pipeline import TestPipeline
from apache_beam.testing.util import assert_that, equal_to

from ceap.errors import ConnectorError
from ceap.plugins import connectors
from connectors.bigquery import BigQueryConnector, DictsToBatches, RowsToRecordBatch

QUERY = {"query": "SELECT customer_id, score FROM `p.d.t`", "project": "p"}
ROWS = [
    {"customer_id": f"c{i}", "score": i / 10, "day": dt.date(2024, 5, 1), "n": Decimal(i)}
    for i in range(10)
]


@pytest.fixture
def no_gcp_extra(monkeypatch):
    """Whatever is installed, import the gcp extra's modules as missing."""
    for name in ("apitools", "google.cloud.bigquery", "google.cloud.bigquery_storage_v1"):
        monkeypatch.setitem(sys.modules, name, None)


def test_registered_by_name():
    assert connectors.get("bigquery") is BigQueryConnector


def test_exactly_one_of_query_and_table():
    with pytest.raises(pydantic.ValidationError, match="exactly one of 'query' and 'table'"):
        BigQueryConnector({"query": "SELECT 1", "table": "d.t"})
    with pytest.raises(pydantic.ValidationError, match="exactly one of 'query' and 'table'"):
        BigQueryConnector({"project": "p"})
    with pytest.raises(pydantic.ValidationError, match="extra"):
        BigQueryConnector({**QUERY, "query_parameters": [1]})  # not supported by Beam
    with pytest.raises(pydantic.ValidationError, match="temp_dataset needs its project"):
        BigQueryConnector({"table": "d.t", "temp_dataset": "scratch"})
    assert BigQueryConnector(QUERY).options.use_standard_sql is True


def test_graph_without_the_gcp_extra_is_a_clear_error(no_gcp_extra):
    p = beam.Pipeline()
    with pytest.raises(ConnectorError, match=r"apache-beam\[gcp\].*pip install 'ceap\[gcp\]'"):
        _ = p | "Source[0:bigquery]" >> BigQueryConnector(QUERY).read()
    with pytest.raises(ConnectorError, match=r"pip install 'ceap\[gcp\]'"):
        BigQueryConnector({"table": "p:d.t", "method": "DIRECT_READ"}).read_table()


def test_rows_to_record_batch_dofn():
    with TestPipeline() as p:
        batches = (
            p
            | beam.Create([ROWS[:4], ROWS[4:], []], reshuffle=False)
            | beam.ParDo(RowsToRecordBatch(["score", "customer_id", "absent"]))
        )
        assert_that(
            batches | "Shape" >> beam.Map(lambda b: (b.schema.names, b.num_rows)),
            equal_to([(["score", "customer_id"], 4), (["score", "customer_id"], 6)]),
        )


def test_dicts_to_batches_keeps_every_row_with_types():
    with TestPipeline() as p:
        batches = p | beam.Create(ROWS) | DictsToBatches(max_rows=4)
        sizes = batches | "Sizes" >> beam.Map(lambda b: b.num_rows)
        assert_that(
            sizes | "Total" >> beam.CombineGlobally(sum), equal_to([len(ROWS)]), label="AllRows"
        )
        assert_that(
            sizes | "Max" >> beam.CombineGlobally(max), equal_to([4]), label="AtMostMaxRows"
        )
        assert_that(
            batches | "Rows" >> beam.FlatMap(lambda b: b.to_pylist()), equal_to(ROWS), label="Rows"
        )
        types = batches | "Types" >> beam.Map(lambda b: tuple(str(t) for t in b.schema.types))
        assert_that(
            types | beam.Distinct(),
            equal_to([("string", "double", "date32[day]", "decimal128(1, 0)")]),
            label="Types",
        )


def test_batch_is_a_record_batch():
    [batch] = list(RowsToRecordBatch().process(ROWS))
    assert isinstance(batch, pa.RecordBatch)
    assert batch.num_rows == len(ROWS)
