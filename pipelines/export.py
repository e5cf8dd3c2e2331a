"""``python run.py export --date D --output DIR_OR_URI``: one day of the store as Hive-partitioned
Parquet, for DuckDB, pandas, Spark and Athena/Glue (docs/architecture.md, "CLI").

    python run.py export --date 2026-11-01 --output exports/ [--store sqlite] [beam options...]
    python run.py export --date 2026-11-01 --output s3://bucket/ceap/ [--s3_endpoint_url URL ...]
    python run.py export --date 2026-11-01 --output gs://bucket/ceap/ --runner DataflowRunner ...

s3:// goes through Beam's S3 filesystem (boto3): credentials, region and endpoint come from
boto3's usual chain (``AWS_*`` variables, ``AWS_ENDPOINT_URL`` for MinIO/moto) or from Beam's
S3Options flags (``--s3_endpoint_url --s3_access_key_id --s3_secret_access_key
--s3_region_name``), which ``main`` passes on with the other unknown flags.

Layout, one file per (table, day, program)::

    OUTPUT/candidates/dt=2026-11-01/program=reviews/part-00000.parquet
    OUTPUT/outbox/dt=2026-11-01/program=reviews/part-00000.parquet
    OUTPUT/responses/dt=2026-11-01/program=reviews/part-00000.parquet
    OUTPUT/events/dt=2026-11-01/program=reviews/part-00000.parquet

What a day holds (times are UTC):
  - ``candidates``: candidates created on D (a re-run keeps a live candidate's created_at, so a
    candidate lands in one day only), with their status as of the export.
  - ``outbox``: rows created (queued) on D or sent on D, with their status as of the export. A
    row queued on D and sent on D+3 is in both days; the later export holds its final state
    (deduplicate on ``idempotency_key``, latest ``dt`` wins).
  - ``responses``: responses recorded on D.
  - ``events``: engagement events (the store's ``engagement_events``: delivered, bounced,
    complained, opened, clicked, unsubscribed, failed) that happened (``at``) on D, whenever
    they were received. Only a store with the delivery feedback role keeps them; from any
    other the table has no files (and an export replaces an earlier day with none).

As Hive writes them, ``dt`` and ``program`` are directory names only, not columns inside the
files; readers with Hive partitioning turn them back into columns. Schema (Parquet, snappy;
``timestamp`` is INT64 milliseconds, UTC-adjusted; Glue types in brackets):

  candidates: customer_id string, subject_type string, subject_id string, action string,
      context string (JSON object), score double, model_id string (the experiment arm's
      model), treatment string (the arm's label), created_at timestamp, expires_at timestamp,
      deliver_after timestamp, status string (live | expired | consumed | suppressed)
  outbox: customer_id string, subject_id string, channel string, send_after timestamp,
      status string (pending | waiting | sent | shadowed | suppressed | failed), attempts bigint,
      idempotency_key string, reason string (why suppressed or failed; ``shadow`` for shadow
      sends, whose message preview is not exported), template string, shadow boolean,
      created_at timestamp, sent_at timestamp, updated_at timestamp, model_id string,
      treatment string (the candidate's arm), step string (the journey step: the channel
      type unless named)
  responses: customer_id string, subject_id string, response string (JSON), created_at
      timestamp, model_id string, treatment string (the responding candidate's arm)
  events: customer_id string, subject_id string, channel string, step string (the channel
      step the message was sent by), idempotency_key string (the outbox row's: join on it),
      event string (delivered | bounced | complained | opened | clicked | unsubscribed |
      failed), at timestamp (when it happened, as the provider or the link saw it), detail
      string (as recorded: JSON such as ``{"url": ...}`` for a click, a provider's text
      detail as sent; null when none), model_id string, treatment string (the candidate's arm)
      (``at`` is a keyword to DuckDB: write ``"at"`` or ``e.at`` in queries)
  partition keys: dt string (YYYY-MM-DD), program string

The schemas, the SQL that selects a day and the cast to the schemas: pipelines/export_tables.py.

Idempotent per date: every file is first written under ``OUTPUT/_staging/<id>/`` (outside the
table locations, and ``_``-prefixed, which Hive, Athena and pyarrow skip); once all are
written, each table's ``dt=D`` partition is replaced as a whole. On a local filesystem that
is two directory renames (old aside, new in), so a reader sees the old day or the new one,
never a mix. Object stores (s3://, gs://) cannot rename a prefix: the new parts are copied
over the old ones (same names, each object replaced atomically), then every other object under
the day (a program with no rows any more) is deleted, and so are the staged objects. Folder
markers (empty keys ending in ``/``) are left alone. A failed export changes nothing.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import sys
import uuid
from collections.abc import Iterator
from datetime import date
from typing import NamedTuple

import apache_beam as beam
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
from apache_beam.io.filesystem import CompressionTypes
from apache_beam.io.filesystems import FileSystems
from apache_beam.metrics import Metrics
from apache_beam.options.pipeline_options import PipelineOptions, TestOptions

from ceap.errors import ConfigError
from connectors.files import is_local
from pipelines.export_tables import (  # noqa: F401 - day_bounds: re-exported for callers
    FEEDBACK_TABLES,
    QUERIES,
    SCHEMAS,
    SOURCE_COLUMNS,
    SOURCE_TABLES,
    TABLES,
    conform,
    day_bounds,
    params,
)
from pipelines.options import default_runner
from pipelines.runners import on_dataflow, prepare_beam_args
from stores.spec import StoreSpec, require_store

PART = "part-00000.parquet"
STAGING = "_staging"


class Part(NamedTuple):
    """One Parquet file written to the staging area."""

    table: str
    program: str
    path: str
    rows: int


def _raw_batches(store_spec: str, table: str, day: str, batch_rows: int) -> Iterator[pa.Table]:
    """The day's rows of ``table`` as Arrow tables of the store's own (text) columns."""
    from stores.ports import Role, require_roles
    from stores.spec import open_store
    from stores.sqlite import SqliteStore

    store = open_store(store_spec)
    try:
        require_roles(store, "export", store_spec)
        if table in FEEDBACK_TABLES and Role.FEEDBACK not in store.roles:
            return  # this backend keeps no delivery feedback (yet): the day has no events
        if isinstance(store, SqliteStore):
            cursor = store.connection.execute(QUERIES[table], params(table, day))
            names = [d[0] for d in cursor.description]
            while rows := cursor.fetchmany(batch_rows):
                columns = list(zip(*rows, strict=True))
                yield pa.table({n: pa.array(list(c)) for n, c in zip(names, columns, strict=True)})
            return
        yield from _duckdb_batches(store, table, day, batch_rows)
    finally:
        store.close()


def _duckdb_batches(store, table: str, day: str, batch_rows: int) -> Iterator[pa.Table]:
    """Other backends: their whole tables as Arrow, queried by DuckDB with the same SQL."""
    import duckdb

    con = duckdb.connect()
    for name in {"candidates", SOURCE_TABLES.get(table, table)}:
        arrow = store.table(name)
        for column in SOURCE_COLUMNS[name]:
            if column not in arrow.column_names:
                arrow = arrow.append_column(column, pa.nulls(arrow.num_rows, pa.string()))
        con.register(name, arrow)
    result = con.execute(QUERIES[table], params(table, day))
    # DuckDB 2 reads a result in batches with to_arrow_reader; 1.x named it fetch_record_batch.
    batches = getattr(result, "to_arrow_reader", None) or result.fetch_record_batch
    reader = batches(batch_rows)
    for batch in reader:
        yield pa.Table.from_batches([batch])


def read_day(
    table: str, store_spec: str, day: str, batch_rows: int = 50_000
) -> Iterator[tuple[tuple[str, str], pa.Table]]:
    """Yields ((table, program), rows without the program column) for one table's day."""
    rows = beam.metrics.Metrics.counter("ceap.export", table)
    for raw in _raw_batches(store_spec, table, day, batch_rows):
        batch = conform(raw, table)
        programs = batch.column("program")
        for program in pc.unique(programs).to_pylist():
            part = batch.filter(pc.equal(programs, program)).drop_columns(["program"])
            rows.inc(part.num_rows)
            yield (table, program), part


def write_part(key: tuple[str, str], parts, staging: str = "", day: str = "") -> Part:
    """Writes one (table, program) partition of the day as a single Parquet file in staging."""
    table, program = key
    data = pa.concat_tables(list(parts)).cast(SCHEMAS[table])
    path = FileSystems.join(staging, table, f"dt={day}", f"program={program}", PART)
    with FileSystems.create(path, compression_type=CompressionTypes.UNCOMPRESSED) as f:
        pq.write_table(data, f, compression="snappy", coerce_timestamps="ms")
    return Part(table, program, path, data.num_rows)


def _is_local(path: str) -> bool:
    from apache_beam.io.localfilesystem import LocalFileSystem

    return isinstance(FileSystems.get_filesystem(path), LocalFileSystem)


def commit(parts: list[Part], output: str, staging: str, day: str) -> list[Part]:
    """Replaces each table's ``dt=day`` partition with what was staged (nothing staged for a
    table: its day is removed, so a re-export never keeps rows the store no longer has)."""
    local = _is_local(output)
    final_parts = []
    for table in TABLES:
        final = FileSystems.join(output, table, f"dt={day}")
        staged = [p for p in parts if p.table == table]
        if local:
            _swap_local(final, FileSystems.join(staging, table, f"dt={day}") if staged else None,
                        FileSystems.join(staging, f"replaced-{table}"))  # fmt: skip
        else:
            _replace_objects(final, staged, day)
        final_parts += [
            p._replace(path=FileSystems.join(final, f"program={p.program}", PART)) for p in staged
        ]
    # Object stores have no directories (``exists(prefix)`` is False there): the staged
    # objects are deleted by name; a local staging directory is removed as a tree.
    if parts and not local:
        FileSystems.delete([p.path for p in parts])
    if FileSystems.exists(staging):
        FileSystems.delete([staging])
    if local:  # the staging root too, once no other export is using it
        with contextlib.suppress(OSError):
            os.rmdir(os.path.dirname(staging.rstrip("/")))
    return final_parts


def _swap_local(final: str, staged_dir: str | None, aside: str) -> None:
    if os.path.exists(final):
        os.rename(final, aside)
    if staged_dir is not None:
        os.makedirs(os.path.dirname(final), exist_ok=True)
        os.rename(staged_dir, final)


def _replace_objects(final: str, staged: list[Part], day: str) -> None:
    """Copies the staged parts over the day's, then deletes every other object under the day
    (a program with no rows any more, foreign files). Folder markers (zero-byte keys ending in
    ``/``, as the S3 console creates) are kept: they hold no rows, and Beam deletes a path
    ending in ``/`` as a whole tree, which would take the new parts with it."""
    targets = [FileSystems.join(final, f"program={p.program}", PART) for p in staged]
    if FileSystems.get_filesystem(final).has_dirs():  # local (tests force this path on one)
        for parent in {t.rsplit("/", 1)[0] for t in targets}:
            if not FileSystems.exists(parent):
                FileSystems.mkdirs(parent)
    if staged:
        FileSystems.copy([p.path for p in staged], targets)
    keep = set(targets)
    existing = [m.path for r in FileSystems.match([FileSystems.join(final, "**")]) for m in r.metadata_list]  # fmt: skip
    stale = [path for path in existing if path not in keep and not path.endswith("/")]
    if stale:
        FileSystems.delete(stale)


def build_pipeline(
    day: str, output: str, store: str, options: PipelineOptions | None = None
) -> tuple[beam.Pipeline, str]:
    """The export graph, not run: read each table's day, group by (table, program), write one
    staged file per group, then commit them all at once. Returns the pipeline and its
    staging directory."""
    date.fromisoformat(day)  # a bad date fails here, before any work
    options = options or PipelineOptions([])
    staging = FileSystems.join(output, STAGING, uuid.uuid4().hex[:12])
    p = beam.Pipeline(runner=default_runner(options), options=options)
    _ = (
        p
        | "Tables" >> beam.Create(TABLES)
        | "ReadDay" >> beam.FlatMap(read_day, store, day)
        | "ByPartition" >> beam.GroupByKey()
        | "WriteParquet" >> beam.MapTuple(write_part, staging=staging, day=day)
        | "AllParts" >> beam.combiners.ToList()
        | "Commit" >> beam.Map(commit, output, staging, day)
        | "Report" >> beam.FlatMap(lambda parts: parts)
        | "Count" >> beam.Map(_count_part)
    )
    return p, staging


def _count_part(part: Part) -> Part:
    """Reports a committed part to the driver through a counter: a print here would land in
    a worker's log on a distributed runner (Dask, Dataflow), not on the user's terminal."""
    Metrics.counter(PARTS, f"{part.table}{_SEP}{part.program}").inc(part.rows)
    return part


PARTS = "ceap.export.parts"
_SEP = "\x1f"


def run_export(day: str, output: str, store: str = "sqlite", beam_args: list[str] | None = None) -> dict[str, int]:  # fmt: skip
    """Runs the export to completion; returns rows exported per table."""
    return export_day(day, output, store, beam_args)[0]


def export_day(
    day: str, output: str, store: str = "sqlite", beam_args: list[str] | None = None
) -> tuple[dict[str, int], list[tuple[str, str, int]]]:
    """Runs the export to completion; returns rows per table and the (table, program, rows)
    partitions it committed, in table order."""
    from apache_beam.metrics.metric import MetricsFilter

    beam_args = prepare_beam_args(beam_args or [], store=store)
    if on_dataflow(beam_args) and is_local(output):
        raise ConfigError(
            f"--output {output!r} is on this machine; Dataflow workers write to gs:// (or s3://)"
        )
    p, _ = build_pipeline(day, output, store, PipelineOptions(beam_args))
    result = p.run()
    result.wait_until_finish()
    counts = dict.fromkeys(TABLES, 0)
    for c in result.metrics().query(MetricsFilter().with_namespace("ceap.export"))["counters"]:
        value = c.committed if c.committed is not None else c.attempted
        counts[c.key.metric.name] += int(value or 0)
    parts = []
    for c in result.metrics().query(MetricsFilter().with_namespace(PARTS))["counters"]:
        table, program = c.key.metric.name.split(_SEP)
        value = c.committed if c.committed is not None else c.attempted
        parts.append((TABLES.index(table), program, table, int(value or 0)))
    for _, program, table, rows in sorted(parts):
        path = FileSystems.join(output, table, f"dt={day}", f"program={program}", PART)
        print(f"  {table:11s} {program:20s} {rows:>10,}  {path}", flush=True)
    return counts, [(table, program, rows) for _, program, table, rows in sorted(parts)]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="run.py export", description=__doc__.split("\n\n")[0])
    parser.add_argument("--date", required=True, help="the day to export, YYYY-MM-DD (UTC)")
    parser.add_argument("--output", required=True, help="a directory, s3://... or gs://...")
    parser.add_argument("--store", default=os.environ.get("CEAP_STORE", "sqlite"))
    parser.add_argument("--config-dir", "--config_dir", dest="config_dir", default=None)
    parser.add_argument("--glue-database", "--glue_database", dest="glue_database", default=None,
                        help="register the day's partitions in this Glue database (s3:// only)")  # fmt: skip
    parser.add_argument("--glue-endpoint-url", "--glue_endpoint_url", dest="glue_endpoint_url",
                        default=None, help="Glue endpoint (default: boto3's, AWS_ENDPOINT_URL)")  # fmt: skip
    args, beam_args = parser.parse_known_args(argv)
    if (problem := _usage_problem(args)) is not None:
        print(f"ceap: {problem}", file=sys.stderr)
        return 2
    try:  # as workers elsewhere must find them (a Dask worker has its own directory)
        args.store = str(StoreSpec.parse(args.store).absolute())
    except ConfigError as exc:
        print(f"ceap: {exc}", file=sys.stderr)
        return 2
    if "://" not in args.output:
        args.output = os.path.abspath(args.output)
    print(f"export {args.date} -> {args.output}", flush=True)
    try:
        require_store(args.store)
        counts, parts = export_day(args.date, args.output, args.store, beam_args)
    except Exception as exc:  # noqa: BLE001 - reported; a failed export changes nothing
        print(f"ceap: export failed: {_root_cause(exc)}", file=sys.stderr)
        return 1
    print("  " + ", ".join(f"{t}: {n:,} rows" for t, n in counts.items()))
    if PipelineOptions(beam_args).view_as(TestOptions).dry_run:
        print("  (a dry run: nothing was read or written)")
        return 0
    if args.glue_database:
        return _register(args, beam_args, parts)
    return 0


def _usage_problem(args: argparse.Namespace) -> str | None:
    try:
        date.fromisoformat(args.date)
    except ValueError:
        return f"--date must be YYYY-MM-DD, not {args.date!r}"
    if args.glue_database is not None and not args.glue_database.strip():
        return "--glue-database is empty (an unset variable?): name the Glue database, or drop the flag"
    if args.glue_database and not args.output.startswith("s3://"):
        return (f"--glue-database needs an s3:// --output (Athena reads S3), not {args.output!r}; "
                "an export elsewhere is read with DuckDB or pyarrow as docs/export.md shows")  # fmt: skip
    return None


def _register(args: argparse.Namespace, beam_args: list[str], parts) -> int:
    """The committed day into the Glue Data Catalog (pipelines/export_glue.py)."""
    from pipelines.export_glue import client_from_args, register_day

    try:
        glue = client_from_args(beam_args, args.glue_endpoint_url)
        written = [(table, program) for table, program, _ in parts]
        done = register_day(glue, args.glue_database, args.output, args.date, written)
    except Exception as exc:  # noqa: BLE001 - the files are exported; the catalog is not
        print(f"ceap: export written, but registering it in Glue database "
              f"{args.glue_database} failed: {_root_cause(exc)}", file=sys.stderr)  # fmt: skip
        return 1
    print(f"  glue {args.glue_database}: {done['created']} partitions created, "
          f"{done['updated']} updated, {done['dropped']} dropped")  # fmt: skip
    for table, location in done["elsewhere"].items():
        print(f"  note: glue table {table} is located at {location}, not under {args.output}: "
              "its partitions of this day are here, its others stay where they were", file=sys.stderr)  # fmt: skip
    return 0


def _root_cause(exc: BaseException) -> BaseException:
    """Beam wraps worker errors; report the innermost cause."""
    seen = set()
    while (exc.__cause__ or exc.__context__) is not None and id(exc) not in seen:
        seen.add(id(exc))
        exc = exc.__cause__ or exc.__context__
    return exc
