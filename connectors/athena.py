"""``athena``: the rows of an Amazon Athena query, as typed Arrow record batches.

A read is one split: the query is started with ``StartQueryExecution``, polled with
exponential backoff until it ends, and its result is read from the CSV object Athena
writes to the output location (boto3 + ``pyarrow.csv``: streaming and fast). When that
object cannot be read (no S3 permission, no CSV result), the rows are paged through
``GetQueryResults`` instead (1,000 rows a call: correct, much slower). Either way, columns
get the Arrow types of Athena's result metadata (varchar -> string, bigint -> int64,
double -> float64, boolean -> bool, timestamp -> timestamp[us], date -> date32,
decimal(p, s) -> decimal128(p, s); anything else, e.g. arrays or maps, stays a string).

Values never go into the SQL text: the query has ``?`` placeholders and ``parameters``
travel as Athena ``ExecutionParameters``. Athena reads each parameter as a SQL literal,
so strings are sent quoted (``'O''Brien'``), dates as ``DATE '2024-01-31'``.

Credentials come from the usual AWS chain (env, profile, instance role). For tests, the
endpoint of both Athena and S3 can be overridden with ``endpoint_url`` or the env var
``CEAP_AWS_ENDPOINT_URL`` (moto, LocalStack).
"""

from __future__ import annotations

import logging
import os
import time
from collections.abc import Collection, Iterator, Sequence
from datetime import UTC, date, datetime
from typing import Any

import pyarrow as pa
import pyarrow.csv as pcsv
from pydantic import BaseModel, ConfigDict, Field, field_validator

from ceap.errors import ConnectorError
from ceap.plugins import connectors
from connectors.base import BATCH_ROWS, Connector

log = logging.getLogger(__name__)

ENDPOINT_ENV = "CEAP_AWS_ENDPOINT_URL"
MAX_POLL_SECONDS = 15.0
"""Backoff ceiling between two GetQueryExecution calls."""
CSV_BLOCK_BYTES = 64 << 20
PAGE_ROWS = 1000  # the most GetQueryResults returns per call

_TYPES: dict[str, pa.DataType] = {  # by Athena type name; anything else stays a string
    **dict.fromkeys(["integer", "int"], pa.int32()),
    **dict.fromkeys(["float", "real"], pa.float32()),
    **{"bigint": pa.int64(), "smallint": pa.int16(), "tinyint": pa.int8()},
    **{"double": pa.float64(), "boolean": pa.bool_(), "date": pa.date32()},
    "timestamp": pa.timestamp("us"),
}


class AthenaOptions(BaseModel):
    model_config = ConfigDict(extra="forbid")
    query: str = Field(min_length=1)
    """The SQL to run; ``?`` marks where each of ``parameters`` goes."""
    database: str | None = None
    """Database the query's unqualified table names resolve in."""
    output: str | None = None
    """``s3://bucket/prefix/`` for the result files; else the workgroup's setting."""
    workgroup: str | None = None
    region: str | None = None
    """AWS region; else the AWS default (``AWS_REGION`` / profile)."""
    parameters: list[bool | int | float | datetime | date | str] = Field(default_factory=list)
    """Values for the ``?`` placeholders, in order (sent as ExecutionParameters)."""
    poll_seconds: float = Field(default=1.0, gt=0)
    """First wait between status checks; doubles up to 15 s."""
    timeout_seconds: float = Field(default=3600.0, gt=0)
    """The query is cancelled, and the read fails, after this long."""
    endpoint_url: str | None = None
    """Athena and S3 endpoint override (tests); also ``$CEAP_AWS_ENDPOINT_URL``."""

    @field_validator("output")
    @classmethod
    def _s3_uri(cls, value: str | None) -> str | None:
        if value is not None and not value.startswith("s3://"):
            raise ValueError(f"must be an s3:// URI, got {value!r}")
        return value


@connectors.register("athena")
class AthenaConnector(Connector):
    Options = AthenaOptions

    def read_split(
        self,
        split: Any,
        columns: Sequence[str] | None = None,
        *,
        text_columns: Collection[str] = (),  # typed by the query's result metadata
    ) -> Iterator[pa.RecordBatch]:
        from botocore.exceptions import BotoCoreError, ClientError

        athena, s3 = self._client("athena"), self._client("s3")
        try:
            query_id = self._start(athena)
            execution = self._wait(athena, query_id)
            first = athena.get_query_results(QueryExecutionId=query_id, MaxResults=1)
            schema = arrow_schema(first["ResultSet"]["ResultSetMetadata"]["ColumnInfo"])
            wanted = [c for c in columns if c in schema.names] if columns else None
            if columns and not wanted:
                raise ConnectorError(
                    f"athena: none of the columns {list(columns)} is in the query result "
                    f"(columns: {', '.join(schema.names)})"
                )
            location = (execution.get("ResultConfiguration") or {}).get("OutputLocation") or ""
            body = _open_object(s3, location) if location.endswith(".csv") else None
            if body is None:
                log.info("athena query %s: reading results through GetQueryResults", query_id)
                yield from _read_pages(athena, query_id, schema, wanted)
                return
            with body:
                yield from _csv_batches(body, schema, wanted, header=True)
        except (BotoCoreError, ClientError) as exc:
            raise ConnectorError(f"athena: {exc}") from exc

    # -- Athena calls --------------------------------------------------------------------
    def _client(self, service: str) -> Any:
        import boto3
        from botocore.config import Config

        endpoint = self.options.endpoint_url or os.environ.get(ENDPOINT_ENV) or None
        config = Config(retries={"mode": "standard"})
        if endpoint and service == "s3":
            config = config.merge(Config(s3={"addressing_style": "path"}))
        return boto3.session.Session().client(
            service, region_name=self.options.region, endpoint_url=endpoint, config=config
        )

    def _start(self, athena: Any) -> str:
        opts = self.options
        request: dict[str, Any] = {"QueryString": opts.query}
        if opts.database:
            request["QueryExecutionContext"] = {"Database": opts.database}
        if opts.output:
            request["ResultConfiguration"] = {"OutputLocation": opts.output}
        if opts.workgroup:
            request["WorkGroup"] = opts.workgroup
        if opts.parameters:
            request["ExecutionParameters"] = [athena_literal(v) for v in opts.parameters]
        return athena.start_query_execution(**request)["QueryExecutionId"]

    def _wait(self, athena: Any, query_id: str) -> dict[str, Any]:
        """Polls until the query ends; returns its QueryExecution (raises if not SUCCEEDED)."""
        deadline = time.monotonic() + self.options.timeout_seconds
        delay = self.options.poll_seconds
        while True:
            execution = athena.get_query_execution(QueryExecutionId=query_id)["QueryExecution"]
            status = execution["Status"]
            state = status["State"]
            if state == "SUCCEEDED":
                return execution
            if state in ("FAILED", "CANCELLED"):
                reason = status.get("StateChangeReason") or status.get("AthenaError", {}).get(
                    "ErrorMessage", "no reason given"
                )
                raise ConnectorError(f"athena query {query_id} {state.lower()}: {reason}")
            if time.monotonic() + delay > deadline:
                athena.stop_query_execution(QueryExecutionId=query_id)
                raise ConnectorError(
                    f"athena query {query_id} still {state} after "
                    f"{self.options.timeout_seconds:g}s (timeout_seconds); it was cancelled"
                )
            time.sleep(delay)
            delay = min(delay * 2, MAX_POLL_SECONDS)


def athena_literal(value: bool | int | float | datetime | date | str) -> str:
    """One ExecutionParameters entry: Athena parses each as a SQL literal."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float):
        return repr(value)
    if isinstance(value, datetime):
        if value.tzinfo is not None:
            value = value.astimezone(UTC).replace(tzinfo=None)
        return f"TIMESTAMP '{value.isoformat(sep=' ')}'"
    if isinstance(value, date):
        return f"DATE '{value.isoformat()}'"
    return "'" + str(value).replace("'", "''") + "'"


def arrow_schema(column_info: list[dict[str, Any]]) -> pa.Schema:
    """Arrow schema from Athena's ResultSetMetadata.ColumnInfo."""
    fields = []
    for col in column_info:
        kind = col["Type"].lower().split("(")[0].strip()
        if kind == "decimal":
            typ = pa.decimal128(int(col.get("Precision") or 38), int(col.get("Scale") or 0))
        else:
            typ = _TYPES.get(kind, pa.string())
        fields.append(pa.field(col["Name"], typ))
    return pa.schema(fields)


def _open_object(s3: Any, uri: str) -> Any | None:
    """The result object's body, or None when it cannot be read (then we page instead)."""
    from botocore.exceptions import BotoCoreError, ClientError

    bucket, _, key = uri.removeprefix("s3://").partition("/")
    try:
        return s3.get_object(Bucket=bucket, Key=key)["Body"]
    except (BotoCoreError, ClientError) as exc:
        log.warning("cannot read athena result %s (%s); paging GetQueryResults", uri, exc)
        return None


def _csv_batches(
    source: Any, schema: pa.Schema, wanted: list[str] | None, header: bool
) -> Iterator[pa.RecordBatch]:
    """Streams Athena-style CSV as batches of at most BATCH_ROWS rows of ``schema``'s types.

    Athena quotes every value and writes NULL as an empty unquoted field: "" is an empty
    string, an unquoted empty cell is null, and a one-column NULL row is an empty line.
    """
    try:
        reader = pcsv.open_csv(
            source,
            read_options=pcsv.ReadOptions(
                column_names=schema.names, skip_rows=int(header), block_size=CSV_BLOCK_BYTES
            ),
            parse_options=pcsv.ParseOptions(newlines_in_values=True, ignore_empty_lines=False),
            convert_options=pcsv.ConvertOptions(
                column_types={f.name: f.type for f in schema},
                include_columns=wanted,
                null_values=[""],
                strings_can_be_null=True,
                quoted_strings_can_be_null=False,
            ),
        )
        for batch in reader:
            for offset in range(0, batch.num_rows, BATCH_ROWS):
                yield batch.slice(offset, BATCH_ROWS)
    except pa.ArrowInvalid as exc:
        raise ConnectorError(f"athena result does not match its column types: {exc}") from exc


def _read_pages(
    athena: Any, query_id: str, schema: pa.Schema, wanted: list[str] | None
) -> Iterator[pa.RecordBatch]:
    """Pages through GetQueryResults, BATCH_ROWS rows at a time, through the same CSV
    conversion as the fast path so that both paths type values identically."""
    pages = athena.get_paginator("get_query_results").paginate(
        QueryExecutionId=query_id, PaginationConfig={"PageSize": PAGE_ROWS}
    )
    lines: list[str] = []
    for number, page in enumerate(pages):
        rows = page["ResultSet"]["Rows"]
        if (
            number == 0
            and rows
            and [d.get("VarCharValue") for d in rows[0]["Data"]] == schema.names
        ):
            rows = rows[1:]  # a SELECT's first row holds the column labels
        lines.extend(",".join(_csv_cell(d) for d in row["Data"]) for row in rows)
        if len(lines) >= BATCH_ROWS or (lines and "NextToken" not in page):
            data = pa.BufferReader(("\n".join(lines) + "\n").encode())
            yield from _csv_batches(data, schema, wanted, header=False)
            lines = []


def _csv_cell(datum: dict[str, str]) -> str:
    if "VarCharValue" not in datum:
        return ""
    return '"' + datum["VarCharValue"].replace('"', '""') + '"'
