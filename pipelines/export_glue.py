"""``run.py export --glue-database DB``: the exported day registered in the Glue Data Catalog,
so Athena (and Spark on EMR, Redshift Spectrum) sees it without ``MSCK REPAIR TABLE``.

After an export to ``s3://...`` has committed, for each export table (candidates, outbox,
responses, events):

  - the database ``DB`` is created when missing;
  - the table is created when missing: EXTERNAL, Parquet, the columns of
    ``pipelines/export_tables.SCHEMAS`` in Glue types, partition keys ``dt`` and ``program``
    (strings), LOCATION ``OUTPUT/<table>/``. An existing table is left as it is (its
    owner may have added properties); only its partitions are managed here;
  - each (dt, program) partition the export wrote is created, or updated when it exists
    (``LOCATION OUTPUT/<table>/dt=D/program=P/``);
  - every other partition of that day is dropped: a re-export replaces the day in the
    catalog as it replaces it in S3 (a program with no rows any more disappears from both).

Partitions of other days are never touched. The catalog is written after the objects, so a
query can briefly see a new partition's files before the partition is registered, never a
partition whose files are gone. A failed registration leaves the exported files in place
and the export exits 1 (re-running the export repairs the catalog).

The Glue client is boto3's: region and credentials from Beam's S3 flags when given
(``--s3_region_name --s3_access_key_id --s3_secret_access_key --s3_session_token``), else
boto3's usual chain (``AWS_DEFAULT_REGION``, ``AWS_*`` credentials, profiles). The endpoint is
``--glue-endpoint-url`` when given, else boto3's (``AWS_ENDPOINT_URL_GLUE``,
``AWS_ENDPOINT_URL``). ``--s3_endpoint_url`` is not used for Glue: an S3-compatible store
(MinIO) has no catalog.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterable

import pyarrow as pa

from pipelines.export_tables import SCHEMAS, TABLES

PARTITION_KEYS = [{"Name": "dt", "Type": "string"}, {"Name": "program", "Type": "string"}]
_PARQUET = {
    "InputFormat": "org.apache.hadoop.hive.ql.io.parquet.MapredParquetInputFormat",
    "OutputFormat": "org.apache.hadoop.hive.ql.io.parquet.MapredParquetOutputFormat",
    "SerdeInfo": {
        "SerializationLibrary": "org.apache.hadoop.hive.ql.io.parquet.serde.ParquetHiveSerDe",
        "Parameters": {"serialization.format": "1"},
    },
}
_BATCH = 100  # BatchCreatePartition / BatchDeletePartition take at most 100 entries
_S3_FLAGS = {  # Beam's S3Options -> boto3 client arguments
    "s3_region_name": "region_name",
    "s3_access_key_id": "aws_access_key_id",
    "s3_secret_access_key": "aws_secret_access_key",
    "s3_session_token": "aws_session_token",
}


def glue_type(arrow: pa.DataType) -> str:
    """The Glue (Hive) type of an export column: the brackets of docs/export.md's schema."""
    if pa.types.is_timestamp(arrow):
        return "timestamp"
    if pa.types.is_float64(arrow):
        return "double"
    if pa.types.is_int64(arrow):
        return "bigint"
    if pa.types.is_boolean(arrow):
        return "boolean"
    if pa.types.is_string(arrow):
        return "string"
    raise TypeError(f"no Glue type for the export column type {arrow}")


def columns(table: str) -> list[dict[str, str]]:
    """The table's columns as Glue wants them (``dt`` and ``program`` are partition keys)."""
    return [{"Name": f.name, "Type": glue_type(f.type)} for f in SCHEMAS[table]]


def table_location(output: str, table: str) -> str:
    return f"{output.rstrip('/')}/{table}/"


def partition_location(output: str, table: str, day: str, program: str) -> str:
    return f"{table_location(output, table)}dt={day}/program={program}/"


def client_from_args(beam_args: list[str], endpoint_url: str | None = None):
    """A boto3 Glue client: Beam's S3 flags among ``beam_args`` give the region and the
    credentials, ``endpoint_url`` (``--glue-endpoint-url``) the endpoint; boto3's own chain
    fills in the rest."""
    import boto3
    from apache_beam.options.pipeline_options import PipelineOptions

    given = PipelineOptions(beam_args).get_all_options(drop_default=True)
    kwargs = {arg: given[flag] for flag, arg in _S3_FLAGS.items() if given.get(flag)}
    if endpoint_url:
        kwargs["endpoint_url"] = endpoint_url
    return boto3.client("glue", **kwargs)


def register_day(
    glue, database: str, output: str, day: str, written: Iterable[tuple[str, str]]
) -> dict[str, int]:
    """Makes the catalog's ``dt=day`` partitions exactly ``written`` ((table, program) pairs
    the export committed under ``output``), creating the database and tables as needed.
    Returns counts: partitions ``created``, ``updated``, ``dropped``, and ``elsewhere``:
    the tables whose own location is not under ``output`` (registered by an export to
    another prefix; their partitions keep their own locations, Athena reads those)."""
    _ensure_database(glue, database)
    written = set(written)
    counts: dict = {"created": 0, "updated": 0, "dropped": 0, "elsewhere": {}}
    for table in TABLES:
        location = _ensure_table(glue, database, table, output)
        if location.rstrip("/") != table_location(output, table).rstrip("/"):
            counts["elsewhere"][table] = location
        existing = _day_partitions(glue, database, table, day)
        wanted = sorted(program for t, program in written if t == table)
        entries = {p: _partition_input(output, table, day, p) for p in wanted}
        new = [entries[p] for p in wanted if p not in existing]
        for chunk in _chunks(new):
            _check(glue.batch_create_partition(
                DatabaseName=database, TableName=table, PartitionInputList=chunk))  # fmt: skip
        for program in (p for p in wanted if p in existing):
            glue.update_partition(DatabaseName=database, TableName=table,
                                  PartitionValueList=[day, program],
                                  PartitionInput=entries[program])  # fmt: skip
        stale = [{"Values": [day, p]} for p in sorted(existing - set(wanted))]
        for chunk in _chunks(stale):
            _check(glue.batch_delete_partition(
                DatabaseName=database, TableName=table, PartitionsToDelete=chunk))  # fmt: skip
        counts["created"] += len(new)
        counts["updated"] += len(wanted) - len(new)
        counts["dropped"] += len(stale)
    return counts


def _ensure_database(glue, database: str) -> None:
    with contextlib.suppress(glue.exceptions.AlreadyExistsException):
        glue.create_database(DatabaseInput={"Name": database})


def _ensure_table(glue, database: str, table: str, output: str) -> str:
    """Creates the table unless it exists; returns its location."""
    table_input = {
        "Name": table,
        "TableType": "EXTERNAL_TABLE",
        "Parameters": {"EXTERNAL": "TRUE", "classification": "parquet",
                       "parquet.compression": "SNAPPY"},
        "PartitionKeys": PARTITION_KEYS,
        "StorageDescriptor": {
            "Columns": columns(table), "Location": table_location(output, table), **_PARQUET,
        },
    }  # fmt: skip
    try:
        glue.create_table(DatabaseName=database, TableInput=table_input)
    except glue.exceptions.AlreadyExistsException:
        found = glue.get_table(DatabaseName=database, Name=table)["Table"]
        return found.get("StorageDescriptor", {}).get("Location", "")
    return table_location(output, table)


def _partition_input(output: str, table: str, day: str, program: str) -> dict:
    return {
        "Values": [day, program],
        "StorageDescriptor": {
            "Columns": columns(table),
            "Location": partition_location(output, table, day, program),
            **_PARQUET,
        },
    }


def _day_partitions(glue, database: str, table: str, day: str) -> set[str]:
    """The programs of the table's ``dt=day`` partitions in the catalog."""
    pages = glue.get_paginator("get_partitions").paginate(
        DatabaseName=database, TableName=table, Expression=f"dt = '{day}'"
    )
    return {
        p["Values"][1]
        for page in pages
        for p in page["Partitions"]
        if p["Values"][0] == day  # the expression is a filter hint; check anyway
    }


def _chunks(items: list) -> Iterable[list]:
    for i in range(0, len(items), _BATCH):
        yield items[i : i + _BATCH]


def _check(response: dict) -> None:
    """Glue's batch calls answer 200 with per-entry errors: raise on any."""
    errors = response.get("Errors") or []
    if errors:
        first = errors[0]
        detail = first.get("ErrorDetail", {})
        raise RuntimeError(
            f"Glue refused partition {first.get('PartitionValues')}: "
            f"{detail.get('ErrorCode')}: {detail.get('ErrorMessage')} ({len(errors)} errors)"
        )
