"""``bigquery``: a BigQuery table or query, read by Beam's own ``ReadFromBigQuery``.

``read()`` is Beam's connector, so the runner splits the read across workers: ``EXPORT``
(default) runs an export job to Avro files on GCS (``gcs_location`` or the pipeline's
``--temp_location``) and reads the files in parallel; ``DIRECT_READ`` streams through the
BigQuery Storage Read API (and reads only the requested columns of a table). Its rows are
dicts; ``DictsToBatches`` groups them (``beam.BatchElements``) into Arrow record batches
of at most ``BATCH_ROWS`` rows. Column types are inferred per batch from the values
(Avro exports give ``datetime``/``date``/``Decimal``/``bytes`` for BigQuery's types).

``read_table()`` (enrichment lookups, tests) reads in-process with google-cloud-bigquery:
``client.query(...).to_arrow()``, or ``list_rows(table).to_arrow()``.

Query parameters: Beam 2.77's ``ReadFromBigQuery`` cannot pass BigQuery query parameters,
so this connector offers no ``parameters`` option rather than formatting values into the
SQL. Write constants into the query, or read a table or a view.

Needs the optional extra: ``pip install 'ceap[gcp]'`` (apache-beam[gcp]); without it
``read()`` fails while the graph is built, naming the extra.
"""

from __future__ import annotations

import importlib
from collections.abc import Collection, Iterator, Sequence
from typing import Any, Literal

import apache_beam as beam
import pyarrow as pa
from apache_beam.options.pipeline_options import GoogleCloudOptions
from pydantic import BaseModel, ConfigDict, model_validator

from ceap.errors import ConnectorError
from ceap.plugins import connectors
from connectors.base import BATCH_ROWS, Connector

GCP_EXTRA = "pip install 'ceap[gcp]'"
MIN_BATCH_ROWS = 1024
"""Smallest batch BatchElements starts from; it grows towards BATCH_ROWS as it measures."""


class BigQueryOptions(BaseModel):
    model_config = ConfigDict(extra="forbid")
    query: str | None = None
    """SQL to run (standard SQL unless ``use_standard_sql: false``). Or set ``table``."""
    table: str | None = None
    """``project:dataset.table``, ``project.dataset.table`` or ``dataset.table``."""
    project: str | None = None
    """Project billed for the query / holding the table; else the pipeline's ``--project``."""
    use_standard_sql: bool = True
    method: Literal["EXPORT", "DIRECT_READ"] = "EXPORT"
    """EXPORT: export job + files on GCS. DIRECT_READ: the BigQuery Storage Read API."""
    temp_dataset: str | None = None
    """Existing ``project.dataset`` for a query's temporary table (else Beam creates one)."""
    gcs_location: str | None = None
    """``gs://`` prefix for EXPORT files; else the pipeline's ``--temp_location``."""

    @model_validator(mode="after")
    def _check(self) -> BigQueryOptions:
        if (self.query is None) == (self.table is None):
            raise ValueError("set exactly one of 'query' and 'table'")
        if (
            self.temp_dataset
            and "." not in self.temp_dataset.replace(":", ".")
            and not self.project
        ):
            raise ValueError("temp_dataset needs its project: 'project.dataset', or set 'project'")
        return self


@connectors.register("bigquery")
class BigQueryConnector(Connector):
    Options = BigQueryOptions

    # BigQuery columns are typed: ``text_columns`` has nothing to keep.
    def read(
        self, columns: Sequence[str] | None = None, *, text_columns: Collection[str] = ()
    ) -> beam.PTransform:
        """PBegin -> PCollection[pa.RecordBatch] through Beam's ReadFromBigQuery."""
        require_gcp(self.options.method)
        return _ReadBigQuery(self.options, list(columns) if columns else None)

    def read_split(
        self,
        split: Any,
        columns: Sequence[str] | None = None,
        *,
        text_columns: Collection[str] = (),
    ) -> Iterator[pa.RecordBatch]:
        yield from self.read_table(columns).to_batches(max_chunksize=BATCH_ROWS)

    def read_table(
        self, columns: Sequence[str] | None = None, *, text_columns: Collection[str] = ()
    ) -> pa.Table:
        require_gcp("EXPORT")
        from google.api_core.exceptions import GoogleAPIError
        from google.auth.exceptions import GoogleAuthError
        from google.cloud import bigquery

        opts = self.options
        try:
            client = bigquery.Client(project=opts.project)
            if opts.query:
                config = bigquery.QueryJobConfig(use_legacy_sql=not opts.use_standard_sql)
                table = client.query(opts.query, job_config=config).to_arrow()
            else:
                ref = client.get_table(opts.table.replace(":", "."))
                fields = [f for f in ref.schema if f.name in columns] if columns else None
                table = client.list_rows(ref, selected_fields=fields).to_arrow()
        except (GoogleAPIError, GoogleAuthError) as exc:
            raise ConnectorError(f"bigquery: {exc}") from exc
        if columns:
            table = table.select([c for c in columns if c in table.column_names])
        return table


class _ReadBigQuery(beam.PTransform):
    def __init__(self, options: BigQueryOptions, columns: list[str] | None) -> None:
        super().__init__()
        self._options = options
        self._columns = columns

    def expand(self, pbegin: beam.pvalue.PBegin) -> beam.PCollection:
        from apache_beam.io.gcp.bigquery import ReadFromBigQuery

        opts = self._options
        kwargs: dict[str, Any] = {"method": opts.method, "project": opts.project}
        if opts.query:
            kwargs.update(query=opts.query, use_standard_sql=opts.use_standard_sql)
        else:
            kwargs["table"] = opts.table
            if opts.method == "DIRECT_READ" and self._columns:
                kwargs["selected_fields"] = self._columns
        if opts.temp_dataset:
            kwargs["temp_dataset"] = _dataset_reference(opts.temp_dataset, opts.project)
        temp_location = pbegin.pipeline.options.view_as(GoogleCloudOptions).temp_location
        if opts.gcs_location:
            kwargs["gcs_location"] = opts.gcs_location
        elif opts.method == "EXPORT" and not temp_location:
            raise ConnectorError(
                "bigquery method EXPORT stages files on GCS: set the connector's "
                "gcs_location or the pipeline option --temp_location gs://..."
            )
        return (
            pbegin
            | "ReadFromBigQuery" >> ReadFromBigQuery(**kwargs)
            | "ToBatches" >> DictsToBatches(self._columns)
        )


class DictsToBatches(beam.PTransform):
    """PCollection[dict] -> PCollection[pa.RecordBatch] of at most ``max_rows`` rows.

    Args:
      columns: keep only these keys (those present), in this order; None keeps all.
      max_rows: the largest batch (default BATCH_ROWS).
    """

    def __init__(self, columns: Sequence[str] | None = None, max_rows: int | None = None) -> None:
        super().__init__()
        self._columns = list(columns) if columns else None
        self._max_rows = max_rows or BATCH_ROWS

    def expand(self, rows: beam.PCollection) -> beam.PCollection:
        return (
            rows
            | "Batch"
            >> beam.BatchElements(
                min_batch_size=min(MIN_BATCH_ROWS, self._max_rows), max_batch_size=self._max_rows
            )
            | "ToArrow" >> beam.ParDo(RowsToRecordBatch(self._columns))
        )


class RowsToRecordBatch(beam.DoFn):
    """A list of row dicts (one BigQuery row each) -> one pa.RecordBatch."""

    def __init__(self, columns: Sequence[str] | None = None) -> None:
        self._columns = list(columns) if columns else None

    def process(self, rows: list[dict[str, Any]]) -> Iterator[pa.RecordBatch]:
        if not rows:
            return
        if self._columns:
            keep = [c for c in self._columns if c in rows[0]]
            rows = [{c: row.get(c) for c in keep} for row in rows]
        yield pa.RecordBatch.from_pylist(rows)


def require_gcp(method: str) -> None:
    """Raises ConnectorError naming the pip extra when apache-beam[gcp] is not installed."""
    modules = ["apitools.base.py", "google.cloud.bigquery"]
    if method == "DIRECT_READ":
        modules.append("google.cloud.bigquery_storage_v1")
    for name in modules:
        try:
            importlib.import_module(name)
        except ImportError as exc:
            raise ConnectorError(
                f"the bigquery connector needs apache-beam[gcp] ({name} is not installed): "
                f"{GCP_EXTRA}"
            ) from exc


def _dataset_reference(spec: str, project: str | None) -> Any:
    from apache_beam.io.gcp.internal.clients import bigquery as messages

    dataset_project, _, dataset = spec.replace(":", ".").rpartition(".")
    return messages.DatasetReference(projectId=dataset_project or project, datasetId=dataset)
