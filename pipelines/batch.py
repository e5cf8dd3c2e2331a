"""The batch graph: sources -> candidates -> enrichment -> filters -> scoring -> ranking ->
store + outbox, with every stage's failures flowing to the dead-letter sink.

``build_pipeline`` only builds (tests inspect the graph); ``run_program`` runs one program
and returns its funnel.
"""

from __future__ import annotations

import dataclasses
import difflib
import logging
import time
import uuid
from pathlib import Path

import apache_beam as beam
import pyarrow as pa
from apache_beam.options.pipeline_options import PipelineOptions

from ceap import alerts, logs
from ceap.context import RunContext
from ceap.errors import ConfigError, root_cause
from ceap.plugins import connectors, filters, scorers
from channels.rendering import check_templates
from configs.schema import ProgramConfig, SourceConfig
from connectors.base import accepts_text_columns
from connectors.batch_coder import batches
from pipelines.graph import candidate_graph
from pipelines.local_paths import pin_local_paths
from pipelines.options import default_runner
from pipelines.runners import prepare_beam_args, run_status, worker_disk
from pipelines.stage_times import stage_seconds
from scorers.experiments import bounds, buckets
from stores.base import iso
from stores.ports import require_roles
from stores.spec import open_store
from transforms.funnel import KEPT, Funnel, counter

log = logging.getLogger(__name__)


def _traffic_share(program: str, index: int, shares: list[float], name: str):
    """Keeps the rows of customers whose hash bucket belongs to source ``index``, counting
    the source's rows read and kept (``source_read|<name>``, ``source_read|<name> (kept)``)."""
    edges = bounds(shares)
    low = 0 if index == 0 else edges[index - 1]
    high = edges[index]

    def keep(batch: pa.RecordBatch, customer_column: str):
        ids = batch.column(customer_column).cast(pa.string())
        b = buckets(f"source:{program}", ids)
        mask = (b >= low) & (b < high)
        counter(program, "source_read", name).inc(batch.num_rows)
        counter(program, "source_read", name + KEPT).inc(int(mask.sum()))
        if mask.all():
            yield batch
        elif mask.any():
            yield batch.filter(pa.array(mask))

    return keep


def _count_shadow(batch: pa.RecordBatch, program: str, source: str) -> None:
    counter(program, "shadow_read").inc(batch.num_rows)
    counter(program, "source_read", source).inc(batch.num_rows)


def source_label(source: SourceConfig, index: int) -> str:
    """A source's name in step labels and the funnel: its ``name``, else ``<index>:<type>``."""
    return source.name or f"{index}:{source.type}"


def count_single_primary(funnel: Funnel, program: ProgramConfig) -> None:
    """With one primary source (no split, so no counting step), its rows read are the run's."""
    primaries = program.primary_sources
    if len(primaries) == 1 and len(program.source) > 1:
        name = source_label(primaries[0], program.source.index(primaries[0]))
        funnel.sources.setdefault(name, funnel.read)


CANONICAL = {"customer_id", "subject_id", "event_time"}


def source_columns(program: ProgramConfig, ctx: RunContext) -> list[str] | None:
    """The source columns the program uses, or None (read all) when a filter or model
    cannot say which it reads. Columns that enrichment brings are not read from the source
    (enrichment replaces them); ``timezone`` is read when present, for ``send_at``."""
    used: set[str] = set(program.fields.context) | {"timezone"}
    for spec in program.filters:
        reads = filters.get(spec.type)(spec.options, ctx).reads()
        if reads is None:
            return None
        used |= reads
    for m in program.scoring.models:
        reads = scorers.get(m.type)(m.options, m.id, ctx).reads()
        if reads is None:
            return None
        used |= reads
    if any(not spec.columns for spec in program.enrich):
        return None
    used |= {spec.key for spec in program.enrich}
    used -= {c for spec in program.enrich for c in spec.columns}
    f = program.fields
    mapped = {"customer_id": f.customer_id, "subject_id": f.subject_id, "event_time": f.event_time}
    columns = {mapped.get(c) or c for c in used if not (c == "event_time" and not f.event_time)}
    columns |= {f.customer_id, f.subject_id} | ({f.event_time} if f.event_time else set())
    return sorted(columns)


def check_columns(program: ProgramConfig, ctx: RunContext) -> None:
    """Refuses, before any row is read, a filter or model that reads a column neither the
    source nor the enrichment provides (a typo in an expression): otherwise it is found only
    when rows reach that stage, and never when an earlier filter removed every row. A source
    or enrichment table that cannot list its columns (a query, a feature store asked for all
    its features) skips the check."""
    if not program.primary_sources:
        return  # nothing to read in batch: the run says so itself
    available = set(CANONICAL)
    # An enrichment without `columns:` brings all of its table's: ask the table, as a source.
    tables = [(spec.type, spec.options, spec.columns) for spec in program.enrich]
    tables += [(source.type, source.options, None) for source in program.primary_sources]
    for kind, options, declared in tables:
        names = declared or connectors.get(kind)(options).column_names()
        if names is None:
            return
        available |= set(names)
    stages = [
        (f"filter {label}", filters.get(spec.type)(spec.options, ctx).reads())
        for label, spec in zip(program.filter_labels(), program.filters, strict=True)
    ] + [(f"model {m.id}", scorers.get(m.type)(m.options, m.id, ctx).reads())
         for m in program.scoring.models]  # fmt: skip
    for stage, reads in stages:
        missing = sorted((reads or set()) - available)
        if missing:
            near = difflib.get_close_matches(missing[0], available, n=1)
            raise ConfigError(
                f"program {program.program}: {stage} reads {', '.join(map(repr, missing))}, "
                "which neither the source nor the enrichment provides"
                + (f" (did you mean {near[0]!r}?)" if near else "")
                + f"; available: {', '.join(sorted(c for c in available if not c.startswith('_ceap_')))}"
            )


def key_columns(program: ProgramConfig) -> list[str]:
    """The source columns the program keys or joins on: the customer and subject columns and
    each enrichment's ``key`` (as its source column). Sources read them as text, never typed
    by inference, so an id is stored and joined exactly as written (``1E5``, ``0012``)."""
    f = program.fields
    mapped = {"customer_id": f.customer_id, "subject_id": f.subject_id}
    return sorted(
        {f.customer_id, f.subject_id} | {mapped.get(e.key, e.key) for e in program.enrich}
    )


def read_sources(p: beam.Pipeline, program: ProgramConfig, ctx: RunContext) -> beam.PCollection:
    """Reads the primary sources (split by traffic share); shadow ones are counted and
    compared with what the primaries return, in a migration report (pipelines/migration.py)."""
    from pipelines.migration import CompareSources

    primaries: list[SourceConfig] = program.primary_sources
    columns = source_columns(program, ctx)
    text = key_columns(program)
    shares = [s.traffic for s in primaries]
    streams, shadows = [], []
    for i, source in enumerate(program.source):
        source_name = source_label(source, i)
        label = f"Read[{source_name}]"
        connector = connectors.get(source.type)(source.options)
        if accepts_text_columns(connector.read):
            rows = p | label >> connector.read(columns, text_columns=text)
        else:  # a connector written before text_columns (a third-party plugin)
            rows = p | label >> connector.read(columns)
        if source.shadow:
            name = program.program
            _ = rows | f"Shadow[{i}]" >> beam.Map(_count_shadow, name, source_name)
            shadows.append((i, label, rows))
            continue
        if len(primaries) > 1:
            keep = _traffic_share(program.program, primaries.index(source), shares, source_name)
            rows = rows | f"Traffic[{i}]" >> batches(beam.FlatMap(keep, program.fields.customer_id))
        streams.append(rows)
    read = streams[0] if len(streams) == 1 else streams | "Sources" >> beam.Flatten()
    keys = [program.fields.customer_id, program.fields.subject_id]
    for i, label, rows in shadows:
        name = label.removeprefix("Read[").removesuffix("]")
        _ = (read, rows) | f"Migration[{i}]" >> CompareSources(program.program, name, keys, ctx)
    return read


def build_pipeline(
    program: ProgramConfig, ctx: RunContext, options: PipelineOptions | None = None
) -> beam.Pipeline:
    options = options or PipelineOptions([])
    p = beam.Pipeline(runner=default_runner(options), options=options)
    rows = read_sources(p, program, ctx)
    candidate_graph(rows, program, ctx)
    return p


def run_program(program: ProgramConfig, ctx: RunContext, beam_args: list[str]) -> Funnel:
    """Runs one program's batch graph to completion and records the run in the store."""
    # Clear errors before anything is submitted (missing --project, the local store on a
    # distributed runner ...); `--runner=DaskRunner` picks the Dask runner that handles our graph.
    beam_args = prepare_beam_args(beam_args, store=ctx.store)
    program = pin_local_paths(program, *worker_disk(beam_args))  # as its workers find them
    run_id = ctx.run_id or uuid.uuid4().hex[:12]
    ctx = dataclasses.replace(ctx, run_id=run_id)  # the graph's alerts and reports name it
    logs.bind(program=program.program, run_id=run_id)
    alerts.reset(program.program)  # dedup per run: this run alerts again what a last one did
    started = RunContext.utcnow()
    record = {
        "run_id": run_id,
        "program": program.program,
        "mode": "batch",
        "started_at": iso(started),
    }
    try:
        store = open_store(ctx.store)
    except Exception as exc:  # the store is down: no runs row can say so, the alert does
        alerts.run_failed(program.program, run_id, "batch", root_cause(exc))
        raise
    try:
        require_roles(store, "batch run", ctx.store)
        check_columns(program, ctx)
        check_templates(program, Path(ctx.config_dir) if ctx.config_dir else None)
        t0 = time.perf_counter()
        result = build_pipeline(program, ctx, PipelineOptions(beam_args)).run()
        result.wait_until_finish()
        funnel = Funnel.from_result(program.program, result, program.filter_labels())
        funnel.seconds = time.perf_counter() - t0
        funnel.stage_seconds = stage_seconds(result, program.filter_labels())
        count_single_primary(funnel, program)
        funnel.add_responses(store)  # per arm: responses so far to its stored candidates
        store.record_run(
            {
                **record,
                "finished_at": iso(RunContext.utcnow()),
                "status": run_status(result, funnel),
                "funnel": {**funnel.as_dict(), **funnel.timing()},
            }
        )
        funnel.alert_degraded(run_id, "batch")
        return funnel
    except Exception as exc:
        # The alert first: recording the failure needs the store, which may be what failed.
        alerts.run_failed(program.program, run_id, "batch", root_cause(exc))
        store.record_run(
            {
                **record,
                "finished_at": iso(RunContext.utcnow()),
                "status": "failed",
                "error": str(exc)[:2000],
            }
        )
        raise
    finally:
        store.close()
