"""Filters that look at what already happened: ``opt_out``, ``frequency_cap``, ``dedup``.

Each reads the platform's own registries from the candidate store (opt-outs written by
the API, the outbox, responses, live candidates) once per worker, plus, optionally, a
warehouse table of the same facts (``history:``), and decides for whole batches at once.
"""

from __future__ import annotations

from typing import Literal

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
from pydantic import BaseModel, ConfigDict, Field

from ceap import arrow
from ceap.durations import Duration, format_duration
from ceap.plugins import filters
from stores.spec import open_store
from transforms.filters.base import Filter, Verdict, column
from transforms.filters.lookup import KeyedCounts, TableRef


class HistoryTable(TableRef):
    """A warehouse table of past facts and the names of its columns."""

    customer_column: str = "customer_id"
    subject_column: str = "subject_id"
    program_column: str | None = None
    """When set, only rows of this program count (scope ``program``/``subject``)."""
    time_column: str | None = None
    """When set, only rows inside the filter's window count."""


class _HistoryFilter(Filter):
    """Shared by the filters that look at what already happened. Batch runs load one
    snapshot per worker (``setup``); streaming runs load, for each micro-batch, only its
    customers (``_load(customers)`` from ``evaluate``), so the store's facts are current.
    Warehouse history tables are static for a run: read once per filter instance."""

    sees_removed_rows = True  # row by row

    def setup(self) -> None:
        if not self.context.mode.lookup_each_batch:
            self._load(None)

    def _load(self, customers: list[str] | None) -> None:
        raise NotImplementedError

    def _history(
        self, ref: HistoryTable, program: str | None, since=None, customers=None
    ) -> pa.Table:
        cache = self.__dict__.setdefault("_history_cache", {})
        key = (id(ref), program, since)
        if key not in cache:
            cache[key] = _history(ref, program, since)
        table = cache[key]
        if customers is None:
            return table
        if ("index", key) not in cache:  # customer -> row positions, built once
            ids = pd.Series(table.column("customer_id").to_pylist(), dtype=object)
            cache[("index", key)] = ids.groupby(ids).indices if len(ids) else {}
        index = cache[("index", key)]
        rows = [index[c] for c in customers if c in index]
        return table.take(pa.array(np.concatenate(rows) if rows else np.array([], np.int64)))

    def _customers(self, batch: pa.RecordBatch) -> list[str] | None:
        """Streaming: the micro-batch's customers, looked up fresh in the store for every
        batch (an opt-out or a send counts at once). Batch runs: None (one snapshot)."""
        if not self.context.mode.lookup_each_batch:
            return None
        return pc.unique(arrow.as_text(batch.column("customer_id"))).drop_null().to_pylist()


def _history(ref: HistoryTable, program: str | None, since=None) -> pa.Table:
    cols = [ref.customer_column, ref.subject_column]
    extra = [c for c in (ref.program_column, ref.time_column) if c]
    table = ref.read(list(dict.fromkeys(cols + extra)), keys=cols)
    if program and ref.program_column:
        table = table.filter(
            pc.equal(arrow.as_text(table.column(ref.program_column).combine_chunks()), program)
        )
    if since is not None and ref.time_column:
        times, _ = arrow.to_utc(table.column(ref.time_column))
        table = table.filter(
            pc.fill_null(pc.greater_equal(times, pa.scalar(since, arrow.UTC_US)), False)
        )
    names = {ref.customer_column: "customer_id", ref.subject_column: "subject_id"}
    out = {new: arrow.as_text(table.column(old).combine_chunks()) for old, new in names.items()}
    # Each fact's program, so an ask found both in the outbox and in the warehouse (which
    # keeps a copy of what was sent) counts once; rows of a table without a program column
    # are this program's when one is asked for, else of an unknown one.
    out["program"] = (
        arrow.as_text(table.column(ref.program_column).combine_chunks())
        if ref.program_column
        else pa.array([program or "history:*"] * table.num_rows, pa.string())
    )
    return pa.table(out)


KEYS = ["customer_id", "subject_id"]
EVENT_KEYS = {"customer_id", "subject_id", "event_time"}


# --- opt_out -------------------------------------------------------------------------------


class OptOutOptions(BaseModel):
    model_config = ConfigDict(extra="forbid")
    registry: bool = True
    """Honour the platform's opt-out registry (``POST /v1/opt-outs``)."""
    column: str | None = None
    """A boolean candidate column meaning "opted out" (e.g. enriched ``opted_out``)."""
    history: HistoryTable | None = None
    """A warehouse table of opted-out customers (its subject column is ignored)."""


@filters.register("opt_out")
class OptOutFilter(_HistoryFilter):
    """Removes customers opted out of this program or of everything, on every channel.

    Channel-only opt-outs do not remove the candidate: its outbox row for that channel is
    written as suppressed, and the dispatcher re-checks at send time.
    """

    Options = OptOutOptions

    def reads(self) -> set[str]:
        return {"customer_id", *([self.options.column] if self.options.column else [])}

    def _load(self, customers: list[str] | None) -> None:
        ids: list[pa.Array] = []
        if self.options.registry:
            store = open_store(self.context.store)
            try:
                reg = store.opt_outs(customers)
            finally:
                store.close()
            if reg.num_rows:
                # A null program means "every program": Kleene logic, or `null == p` would
                # make the whole condition null and drop exactly the global opt-outs.
                program = pc.cast(reg.column("program"), pa.string())
                applies = pc.and_kleene(
                    pc.or_kleene(pc.is_null(program), pc.equal(program, self.context.program)),
                    pc.is_null(reg.column("channel")),
                )
                applies = pc.fill_null(applies, False)
                ids.append(
                    arrow.as_text(reg.column("customer_id").filter(applies).combine_chunks())
                )
        if self.options.history is not None:
            cache = self.__dict__.setdefault("_history_cache", {})
            if "opted" not in cache:  # static warehouse data: read once
                ref = self.options.history
                table = ref.read(
                    [ref.customer_column, *([ref.program_column] if ref.program_column else [])],
                    keys=[ref.customer_column],
                )
                if ref.program_column:
                    table = table.filter(
                        pc.equal(table.column(ref.program_column), self.context.program)
                    )
                cache["opted"] = arrow.as_text(table.column(ref.customer_column).combine_chunks())
            ids.append(cache["opted"])
        self._opted = pc.unique(pa.concat_arrays(ids)) if ids else pa.array([], pa.string())

    def evaluate(self, batch: pa.RecordBatch) -> Verdict:
        if self.context.mode.lookup_each_batch or not hasattr(self, "_opted"):
            self._load(self._customers(batch))
        n = batch.num_rows
        keep = np.ones(n, dtype=bool)
        reasons = np.full(n, None, dtype=object)
        if len(self._opted):
            hit = pc.is_in(batch.column("customer_id"), value_set=self._opted).to_numpy(
                zero_copy_only=False
            )
            reasons[hit] = "opted out"
            keep &= ~hit
        if self.options.column:
            flag = column(batch, self.options.column, self.type_name)
            flagged = pc.fill_null(pc.cast(flag, pa.bool_()), False).to_numpy(zero_copy_only=False)
            reasons[flagged & keep] = f"opted out ({self.options.column})"
            keep &= ~flagged
        return Verdict(keep, pa.array(reasons, pa.string()))


# --- frequency_cap -------------------------------------------------------------------------


class FrequencyCapOptions(BaseModel):
    model_config = ConfigDict(extra="forbid")
    max: int = Field(ge=1)
    """Contacts allowed in the window; a customer with this many already is removed."""
    window: Duration
    scope: Literal["program", "subject", "all"] = "program"
    """Which past contacts count: this program's, this program's on this subject, or all."""
    history: HistoryTable | None = None
    """Past contacts in the warehouse, counted with those in the platform's outbox."""


@filters.register("frequency_cap")
class FrequencyCapFilter(_HistoryFilter):
    """Caps asks per customer: a contact is one ask (program, subject), whatever the number of
    channels it went through; the outbox counts what it sent in the window."""

    Options = FrequencyCapOptions

    def reads(self) -> set[str]:
        return EVENT_KEYS

    def _load(self, customers: list[str] | None) -> None:
        o, ctx = self.options, self.context
        since = ctx.current() - o.window
        program = None if o.scope == "all" else ctx.program
        store = open_store(ctx.store)
        try:
            sent = store.contacts(since, customers)
            live = store.live_keys(ctx.program, ctx.current(), customers)
        finally:
            store.close()
        sent = pa.table({c: _text(sent, c) for c in ("program", "customer_id", "subject_id")})
        if program:
            sent = sent.filter(pc.equal(sent.column("program"), program))
        parts = [sent]
        if o.history is not None:
            hist = self._history(o.history, program, since, customers)
            parts.append(hist.select(["program", "customer_id", "subject_id"]))
        asks = _distinct(pa.concat_tables(parts))
        self._keys = ["customer_id", "subject_id"] if o.scope == "subject" else ["customer_id"]
        self._counts = KeyedCounts(asks, self._keys)
        # A re-run of the same event meets its own sent message: that ask is this candidate,
        # not an earlier one (and counting it would make the re-run rank differently). Only
        # when the key is live for the very same event (same deliver_after) is it discounted;
        # a later event for the same subject is capped by it like any other contact.
        own = sent.filter(pc.equal(sent.column("program"), ctx.program)) if sent.num_rows else sent
        self._own = KeyedCounts(own, KEYS)
        self._same_event = KeyedCounts(live, [*KEYS, "deliver_after"]) if self._own.size else None
        self._reason = (
            f"frequency cap: {o.max}+ contacts in {format_duration(o.window)} ({o.scope})"
        )

    def evaluate(self, batch: pa.RecordBatch) -> Verdict:
        if self.context.mode.lookup_each_batch or not hasattr(self, "_counts"):
            self._load(self._customers(batch))
        counts = self._counts.lookup(batch, self._keys)
        if self._same_event is not None:
            own = self._own.lookup(batch, KEYS) > 0
            if own.any():
                same = self._same_event.lookup(
                    with_deliver_after(batch, self.context.deliver_delay), [*KEYS, "deliver_after"]
                )
                counts = counts - (own & (same > 0))
        return Verdict(counts < self.options.max, self._reason)


def with_deliver_after(batch: pa.RecordBatch, delay) -> pa.RecordBatch:
    """The batch with the ``deliver_after`` text its candidates would be stored with: how a
    live candidate is recognised as the same event rather than a new one."""
    due = pc.add(batch.column("event_time"), pa.scalar(delay, pa.duration("us")))
    return batch.append_column("deliver_after", arrow.iso_seconds(due))


def _distinct(table: pa.Table) -> pa.Table:
    if table.num_rows < arrow.SMALL_BATCH:
        return pa.Table.from_pylist(
            list({tuple(r.values()): r for r in table.to_pylist()}.values()), schema=table.schema
        )
    return arrow.query(arrow.local_duck(), "SELECT DISTINCT * FROM a", a=table)


def _text(table: pa.Table, name: str) -> pa.Array:
    if not table.num_rows:
        return pa.array([], pa.string())
    return arrow.as_text(table.column(name).combine_chunks())


# --- dedup ---------------------------------------------------------------------------------


class DedupOptions(BaseModel):
    model_config = ConfigDict(extra="forbid")
    live: bool = True
    """Remove when this program already has a live candidate for the customer and subject."""
    acted: bool = True
    """Remove when the customer already acted on the subject (responses)."""
    history: HistoryTable | None = None
    """Past responses in the warehouse (e.g. ratings: customer_id, video_id)."""


@filters.register("dedup")
class DedupFilter(_HistoryFilter):
    Options = DedupOptions

    def reads(self) -> set[str]:
        return EVENT_KEYS

    def _load(self, customers: list[str] | None) -> None:
        o, ctx = self.options, self.context
        store = open_store(ctx.store)
        try:
            live = store.live_keys(ctx.program, ctx.current(), customers) if o.live else None
            acted = (
                store.acted_keys(ctx.program, customers).select(["customer_id", "subject_id"])
                if o.acted
                else None
            )
        finally:
            store.close()
        if o.history is not None:
            hist = self._history(o.history, ctx.program, None, customers).select(
                ["customer_id", "subject_id"]
            )
            acted = (
                hist
                if acted is None or not acted.num_rows
                else pa.concat_tables([acted.cast(hist.schema), hist])
            )
        keys = ["customer_id", "subject_id"]
        # Live from *another* event only: the same event's candidate (same deliver_after)
        # is this very candidate again, and re-running a batch must not displace it.
        self._live = KeyedCounts(live, [*keys, "deliver_after"]) if live is not None else None
        self._acted = KeyedCounts(acted, keys) if acted is not None else None
        self._live_any = KeyedCounts(live, keys) if live is not None else None

    def evaluate(self, batch: pa.RecordBatch) -> Verdict:
        if self.context.mode.lookup_each_batch or not hasattr(self, "_live"):
            self._load(self._customers(batch))
        n = batch.num_rows
        keys = ["customer_id", "subject_id"]
        keep = np.ones(n, dtype=bool)
        reasons = np.full(n, None, dtype=object)
        if self._acted is not None and self._acted.size:
            hit = self._acted.lookup(batch, keys) > 0
            reasons[hit] = "already acted on this subject"
            keep &= ~hit
        if self._live is not None and self._live.size:
            stamped = with_deliver_after(batch, self.context.deliver_delay)
            same_event = self._live.lookup(stamped, [*keys, "deliver_after"]) > 0
            hit = (self._live_any.lookup(batch, keys) > 0) & ~same_event & keep
            reasons[hit] = "already a live candidate"
            keep &= ~hit
        return Verdict(keep, pa.array(reasons, pa.string()))
