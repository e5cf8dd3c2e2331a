"""Sinks: the candidate store, the channel outbox and the dead-letter table.

``WriteCandidates`` turns ranked rows into candidate records (context as JSON, times as
ISO-8601 UTC) and one outbox row per candidate and channel. Outbox rows of customers in
the opt-out registry (for all programs, this one, or that channel) are written as
``suppressed``: nobody who opted out is queued, whatever filters the program lists.
"""

from __future__ import annotations

import hashlib
import json
import time

import apache_beam as beam
import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from ceap import arrow
from ceap.context import RunContext
from ceap.errors import ConfigError
from configs.schema import ProgramConfig
from stores.base import CANDIDATE_COLUMNS, iso
from transforms.funnel import counter
from transforms.outcomes import OUTCOME, emit_outcomes
from transforms.schedule import step_times
from transforms.store_fn import Gathered, StoreDoFn


def candidate_records(batch: pa.RecordBatch, program: ProgramConfig, ctx: RunContext) -> pa.Table:
    n = batch.num_rows
    names = batch.schema.names
    missing = [c for c in program.fields.context if c not in names]
    if missing and ctx.mode.schemaless:  # events are schemaless: a field an event lacks is null
        for name in missing:
            batch = batch.append_column(name, pa.nulls(n, pa.string()))
        missing = []
    if missing:
        raise ConfigError(
            f"fields.context: no column(s) {missing} on the candidate after enrichment"
        )
    context = (
        _context_json(batch.select(program.fields.context))
        if program.fields.context
        else pa.array(["{}"] * n, pa.string())
    )
    now = ctx.current()  # one time for the batch: created_at and expires_at agree
    delay = program.events.delay if program.events else None
    deliver = batch.column("event_time")
    if delay:
        deliver = pc.add(deliver, pa.scalar(delay, pa.duration("us")))

    def const(value: object) -> pa.Array:
        return pa.array([value] * n, pa.string())

    return pa.table({
        "program": const(program.program), "customer_id": batch.column("customer_id"),
        "subject_type": const(program.subject_type), "subject_id": batch.column("subject_id"),
        "action": const(program.action), "context": context,
        "score": batch.column("score"), "model_id": batch.column("model_id"),
        "treatment": batch.column("treatment"), "created_at": const(iso(now)),
        "expires_at": const(iso(now + program.store.ttl)),
        "deliver_after": arrow.iso_seconds(deliver), "status": const("live"),
    }).select(CANDIDATE_COLUMNS)  # fmt: skip


def outbox_records(
    batch: pa.RecordBatch, program: ProgramConfig, ctx: RunContext, opt_outs: pa.Table
) -> list[pa.Table]:
    """One row per candidate and journey step (DESIGN §9): ``pending`` when due by itself,
    ``waiting`` for its parent step (``after:``), ``suppressed`` when opted out or when its
    ``at`` time is missing or already past. The key hashes program|customer|subject|step
    (the step is the channel type unless named, so a one-step-per-channel program keeps
    its keys)."""
    n = batch.num_rows
    tz = batch.column("timezone") if "timezone" in batch.schema.names else None
    customers = batch.column("customer_id")
    now = ctx.current()
    out = []
    for ch in program.channels:
        due, problems = step_times(batch, ch, tz, now)
        reasons = pc.coalesce(_opted_out(customers, ch.type, program.program, opt_outs), problems)
        waits = pa.scalar("waiting" if ch.after is not None else "pending")
        status = pc.if_else(pc.is_null(reasons), waits, pa.scalar("suppressed"))
        keys = pc.binary_join_element_wise(
            program.program, customers, batch.column("subject_id"), ch.step, "|"
        )
        out.append(pa.table({
            "program": pa.array([program.program] * n), "customer_id": customers,
            "subject_id": batch.column("subject_id"), "channel": pa.array([ch.type] * n),
            "send_after": arrow.iso_seconds(pc.fill_null(due, batch.column("event_time"))),
            "status": status,
            "attempts": pa.array(np.zeros(n, np.int64)), "idempotency_key": _digest(keys),
            "reason": reasons, "template": pa.array([ch.template] * n, pa.string()),
            "shadow": pa.array(np.full(n, int(ch.shadow), np.int64)),
            "created_at": pa.array([iso(now)] * n), "step": pa.array([ch.step] * n),
        }))  # fmt: skip
    return out


def _context_json(columns: pa.RecordBatch) -> pa.Array:
    """Each row's context as compact JSON; times in the store's ISO format."""
    for i, field in enumerate(columns.schema):
        if pa.types.is_timestamp(field.type) or pa.types.is_date(field.type):
            times, _ = arrow.to_utc(columns.column(i))
            columns = columns.set_column(i, field.name, arrow.iso_seconds(times))
    if columns.num_rows < arrow.SMALL_BATCH:
        return pa.array(
            [
                json.dumps(r, separators=(",", ":"), ensure_ascii=False, default=str)
                for r in columns.to_pylist()
            ],
            pa.string(),
        )
    pack = ", ".join(f"{arrow.quote(c)} := {arrow.quote(c)}" for c in columns.schema.names)
    sql = f"SELECT to_json(struct_pack({pack}))::VARCHAR AS j FROM b"
    return arrow.query(arrow.local_duck(), sql, b=columns).column("j").combine_chunks()


def _digest(keys: pa.Array) -> pa.Array:
    """sha256 hex of each key (the outbox idempotency key)."""
    if len(keys) < arrow.SMALL_BATCH:
        return pa.array(
            [hashlib.sha256(k.encode()).hexdigest() for k in keys.to_pylist()], pa.string()
        )
    table = arrow.query(arrow.local_duck(), "SELECT sha256(k) AS h FROM t", t=pa.table({"k": keys}))
    return table.column("h").combine_chunks()


def _opted_out(customers: pa.Array, channel: str, program: str, opt_outs: pa.Table) -> pa.Array:
    """The suppression reason per row (null where the customer may be contacted)."""
    n = len(customers)
    if not opt_outs.num_rows:
        return pa.nulls(n, pa.string())
    prog = pc.cast(opt_outs.column("program"), pa.string())
    chan = pc.cast(opt_outs.column("channel"), pa.string())
    # Null means "every program" / "every channel": Kleene logic, or `null == x` would make
    # the condition null and silently skip exactly the broadest opt-outs.
    applies = pc.fill_null(
        pc.and_kleene(
            pc.or_kleene(pc.is_null(prog), pc.equal(prog, program)),
            pc.or_kleene(pc.is_null(chan), pc.equal(chan, channel)),
        ),
        False,
    )
    ids = pc.unique(arrow.as_text(opt_outs.column("customer_id").filter(applies).combine_chunks()))
    hit = pc.is_in(arrow.as_text(customers), value_set=ids)
    return pc.if_else(hit, pa.scalar("opted out"), pa.scalar(None, pa.string()))


class _WriteFn(StoreDoFn):
    def __init__(self, program: ProgramConfig, context: RunContext) -> None:
        super().__init__(context)
        self._program = program

    def setup(self) -> None:
        super().setup()
        self._opt_outs = self._store.opt_outs()
        self._loaded = time.monotonic()

    def start_bundle(self) -> None:
        self._gathered = Gathered(self._write_gathered)

    def process(self, batch: pa.RecordBatch):
        if self._ctx.mode.stores_each_batch:
            self._write(batch)
            # Last, after every effect is durable: a crash before this replays the batch
            # (idempotently); a crash after finds it accounted for.
            yield from emit_outcomes(self._ctx, batch, "candidate")
            return
        self._gathered.add(batch)

    def finish_bundle(self) -> None:
        self._gathered.flush()

    def _write_gathered(self, rows: pa.Table) -> None:
        """A batch run's ranked rows, gathered, in one write (no outcomes to emit)."""
        for batch in rows.combine_chunks().to_batches():
            self._write(batch)

    def _write(self, batch: pa.RecordBatch) -> None:
        if self._ctx.mode.stale(self._loaded):
            self._opt_outs = self._store.opt_outs()  # an opt-out made meanwhile counts at once
            self._loaded = time.monotonic()
        name = self._program.program
        records = candidate_records(batch, self._program, self._ctx)
        outbox = outbox_records(batch, self._program, self._ctx, self._opt_outs)
        queued: list[tuple[str, str, int]] = []
        # Candidates and their outbox rows commit together: a crash leaves both or neither.
        with self._store.writing():
            stored = self._store.upsert_candidates(records)
            for rows in outbox:
                channel = rows.column("channel")[0].as_py()  # counted per channel, all its steps
                for status in pc.unique(rows.column("status")).to_pylist():
                    group = rows.filter(pc.equal(rows.column("status"), status))
                    added = self._store.enqueue_outbox(group)
                    # A row there already (a re-run) is the dispatcher's, maybe sent: not queued.
                    queued += [
                        (channel, status, added),
                        (channel, "already queued", group.num_rows - added),
                    ]
        counter(name, "stored").inc(stored)
        for channel, kind, n in queued:
            if n:
                counter(name, "queued", channel, kind).inc(n)


class WriteCandidates(beam.PTransform):
    def __init__(self, program: ProgramConfig, context: RunContext) -> None:
        super().__init__()
        self._program = program
        self._ctx = context

    def expand(self, ranked):
        written = ranked | "Upsert" >> beam.ParDo(_WriteFn(self._program, self._ctx)).with_outputs(
            OUTCOME, main="written"
        )
        return written[OUTCOME]


def json_rows(letters: pa.Table) -> list[dict]:
    """The offending rows of dead letters, parsed back (ids as text, when they were any)."""
    out = []
    for text in letters.column("row").to_pylist():
        row = json.loads(text)
        out.append(
            {
                k: (str(v) if v is not None else None)
                for k, v in row.items()
                if k in ("customer_id", "subject_id")
            }
        )
    return out


class _DeadLetterFn(StoreDoFn):
    """Streaming: each batch's letters are written before their outcomes are emitted. Batch:
    a bundle's letters are gathered and written in one transaction (a commit per source
    batch cost more than its few rows)."""

    def start_bundle(self) -> None:
        self._gathered = Gathered(self._store.write_dead_letters)

    def finish_bundle(self) -> None:
        self._gathered.flush()

    def process(self, letters: pa.Table):
        if not self._ctx.mode.stores_each_batch:
            self._gathered.add(letters)
            return
        self._store.write_dead_letters(letters)
        if self._ctx.mode.records_outcomes:
            # Streaming origins end in the event's log position: record its outcome too.
            positions = [int(o.rsplit("#", 1)[1]) for o in letters.column("origin").to_pylist()]
            rows = json_rows(letters)
            yield pa.table({
                "position": pa.array(positions, pa.int64()),
                "outcome": pa.array(["dead_letter"] * len(positions), pa.string()),
                "reason": letters.column("reason"),
                "customer_id": pa.array([r.get("customer_id") for r in rows], pa.string()),
                "subject_id": pa.array([r.get("subject_id") for r in rows], pa.string()),
            })  # fmt: skip


class WriteDeadLetters(beam.PTransform):
    def __init__(self, context: RunContext) -> None:
        super().__init__()
        self._ctx = context

    def expand(self, letters):
        return letters | "Write" >> beam.ParDo(_DeadLetterFn(self._ctx))
