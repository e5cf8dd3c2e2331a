"""The streaming graph: the program's ``events:`` source feeding the same candidate graph as
batch mode, plus the per-event outcome ledger that makes a restart exactly-once.

On (re)start the source resumes at the first event whose micro-batch is not fully
accounted for; events after it that were already processed are replayed and change
nothing (every sink is idempotent, and the ledger keeps the first outcome of a position).
"""

from __future__ import annotations

import contextlib
import dataclasses
import time
import uuid

import apache_beam as beam
from apache_beam.options.pipeline_options import PipelineOptions, StandardOptions

from ceap import alerts, logs, stopping
from ceap.context import RunContext
from ceap.errors import ConfigError, root_cause
from ceap.plugins import connectors
from configs.schema import ProgramConfig
from pipelines.graph import candidate_graph
from pipelines.local_paths import pin_local_paths
from pipelines.options import default_runner
from pipelines.runners import prepare_beam_args, run_status, worker_disk
from pipelines.stage_times import stage_seconds
from stores.base import iso
from stores.ports import require_roles
from stores.spec import open_store
from transforms.funnel import Funnel
from transforms.outcomes import WriteOutcomes


class RecordBatches:
    """``on_batch`` callback: records each micro-batch the source emits (its positions and
    size), so a restart can tell which events were fully accounted for."""

    def __init__(self, context: RunContext) -> None:
        self._ctx = context
        self._store = None

    def __call__(self, start: int, end: int, size: int) -> None:
        if self._store is None:
            self._store = open_store(self._ctx.store)
        self._store.record_stream_batch(self._ctx.program, start, end, size)

    def __getstate__(self) -> dict:
        return {"_ctx": self._ctx, "_store": None}


def build_streaming_pipeline(
    program: ProgramConfig,
    ctx: RunContext,
    options: PipelineOptions | None = None,
    start: int | None = None,
) -> beam.Pipeline:
    if program.events is None:
        raise ConfigError(
            f"program {program.program} has no `events:` block; it cannot run in streaming mode"
        )
    options = options or PipelineOptions([])
    options.view_as(StandardOptions).streaming = True
    if start is None:
        store = open_store(ctx.store)
        try:
            require_roles(store, "streaming run", ctx.store)
            start = store.resume_position(program.program)
        finally:
            store.close()
    p = beam.Pipeline(runner=default_runner(options), options=options)
    source = connectors.get(program.events.type)(program.events.options)
    rows = p | f"ReadEvents[{program.events.type}]" >> source.read_events(start, RecordBatches(ctx))
    # One ledger sink per branch, no Flatten: the FnApiRunner materialises a Flatten's
    # inputs, which would hold outcomes back until the (endless) stage finished.
    for i, outcome in enumerate(candidate_graph(rows, program, ctx)):
        _ = outcome | f"Outcomes[{i}]" >> WriteOutcomes(ctx)
    return p


def run_streaming(program: ProgramConfig, ctx: RunContext, beam_args: list[str]) -> Funnel:
    """Runs until SIGINT/SIGTERM (or ``stopping.request()``), then drains and returns."""
    beam_args = prepare_beam_args(beam_args, store=ctx.store, streaming=True)
    program = pin_local_paths(program, *worker_disk(beam_args))  # as its workers find them
    stopping.reset()
    started = RunContext.utcnow()
    t0 = time.perf_counter()
    # Unique like a batch run's: `runs` is keyed by run_id, and an id from the uptime clock
    # (perf_counter) repeated across reboots and containers, replacing an earlier run's row.
    run_id = ctx.run_id or f"stream-{uuid.uuid4().hex[:12]}"
    ctx = dataclasses.replace(ctx, run_id=run_id)  # the graph's alerts and reports name it
    logs.bind(program=program.program, run_id=run_id)
    try:
        result = build_streaming_pipeline(program, ctx, PipelineOptions(beam_args)).run()
        result.wait_until_finish()
    except Exception as exc:
        alerts.run_failed(program.program, run_id, "streaming", root_cause(exc))
        _record_failed(ctx, program.program, started, exc)
        raise
    funnel = Funnel.from_result(program.program, result, program.filter_labels())
    funnel.seconds = time.perf_counter() - t0
    funnel.stage_seconds = stage_seconds(result, program.filter_labels())
    store = open_store(ctx.store)
    try:
        store.record_run({
            "run_id": run_id, "program": program.program, "mode": "streaming",
            "started_at": iso(started), "finished_at": iso(RunContext.utcnow()),
            "status": run_status(result, funnel),
            "funnel": {**funnel.as_dict(), **funnel.timing()},
        })  # fmt: skip
    finally:
        store.close()
    funnel.alert_degraded(run_id, "streaming")
    return funnel


def _record_failed(ctx: RunContext, program: str, started, exc: Exception) -> None:
    """The failed run's ``runs`` row, as a batch run records one; never hides ``exc``
    (the store may be what failed: the alert already went out)."""
    with contextlib.suppress(Exception):
        store = open_store(ctx.store)
        try:
            store.record_run({
                "run_id": ctx.run_id, "program": program, "mode": "streaming",
                "started_at": iso(started), "finished_at": iso(RunContext.utcnow()),
                "status": "failed", "error": str(exc)[:2000],
            })  # fmt: skip
        finally:
            store.close()
