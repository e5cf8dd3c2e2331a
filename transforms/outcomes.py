"""Per-event outcomes, recorded in streaming runs: the ledger that makes restarts
exactly-once. Each event (identified by its log position) ends as exactly one of:
candidate, filtered (with the filter and reason), duplicate, below_min_score, ranked_out,
dead_letter. Stages emit them on the ``OUTCOME`` tagged output; batch runs count instead.
"""

from __future__ import annotations

import apache_beam as beam
import pyarrow as pa

from ceap.context import RunContext
from connectors.base import ORIGIN_COLUMN
from transforms.store_fn import StoreDoFn

OUTCOME = "outcome"
IDENTITY_COLUMN = "_ceap_event_key"
"""Streaming: the event's identity (its id, else customer|subject|time), for dedup."""


def outcomes(
    batch: pa.RecordBatch | pa.Table, outcome: str, reasons: str | pa.Array | None = None
) -> pa.Table:
    """Outcome rows for every row of ``batch`` (which carries the event positions)."""
    n = batch.num_rows
    if isinstance(reasons, str) or reasons is None:
        reasons = pa.array([reasons] * n, pa.string())
    names = batch.schema.names
    identity = (
        batch.column(IDENTITY_COLUMN) if IDENTITY_COLUMN in names else pa.nulls(n, pa.string())
    )
    return pa.table({
        "position": batch.column(ORIGIN_COLUMN), "outcome": pa.array([outcome] * n, pa.string()),
        "reason": reasons, "customer_id": batch.column("customer_id"),
        "subject_id": batch.column("subject_id"), "identity": identity,
    })  # fmt: skip


def emit_outcomes(ctx: RunContext, batch, outcome: str, reasons=None):
    """Yields the tagged outcome output in streaming runs; nothing in batch runs."""
    if ctx.mode.records_outcomes and batch.num_rows and ORIGIN_COLUMN in batch.schema.names:
        yield beam.pvalue.TaggedOutput(OUTCOME, outcomes(batch, outcome, reasons))


class _WriteOutcomesFn(StoreDoFn):
    def process(self, table: pa.Table):
        self._store.record_outcomes(self._ctx.program, table)


class WriteOutcomes(beam.PTransform):
    def __init__(self, context: RunContext) -> None:
        super().__init__()
        self._ctx = context

    def expand(self, tables):
        return tables | "Write" >> beam.ParDo(_WriteOutcomesFn(self._ctx))
