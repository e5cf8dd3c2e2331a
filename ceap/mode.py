"""How a run's rows arrive, and what each stage does differently because of it.

A batch run reads a finished source once: one snapshot of what it looks up, rows named by
their place in the source, ranking over every row of a group. A streaming run processes
events as they come, for as long as it runs: each event keeps its log position and ends in
one recorded outcome, lookups are re-read while the stream runs, events may lack fields,
and each micro-batch is ranked on its own. Stages ask the mode for the one property they
depend on (``ctx.mode.records_outcomes``), never for its name.
"""

from __future__ import annotations

import time
from dataclasses import dataclass


@dataclass(frozen=True)
class Mode:
    name: str
    records_outcomes: bool
    """Rows are events named by their log position; every stage records each one's outcome
    (the ledger that makes a restart exactly-once). Batch rows are named by source row."""
    schemaless: bool
    """A field a row lacks is null (events carry what they carry), not a program error."""
    lookup_each_batch: bool
    """Store facts (opt-outs, contacts, live candidates) are read for each batch's
    customers, so they are current; otherwise one snapshot per worker."""
    refresh_seconds: float | None
    """How often whole lookups a stage holds are re-read within an endless bundle (None:
    once per worker)."""
    ranks_each_batch: bool
    """Each micro-batch is ranked on its own (no shuffle); otherwise all rows of a group."""
    dedup_events: bool
    """Upstreams deliver at least once: an event seen within the dedup window is dropped."""
    stores_each_batch: bool
    """Each batch of candidates is stored as it comes (an event's candidate is servable at
    once); otherwise a worker gathers its ranked rows and stores them in as few
    transactions as it can (each transaction rewrites the index pages it touches)."""

    def stale(self, loaded_at: float) -> bool:
        """Whether a lookup loaded at ``loaded_at`` (``time.monotonic()``) is to be re-read."""
        return (
            self.refresh_seconds is not None and time.monotonic() - loaded_at > self.refresh_seconds
        )


BATCH = Mode(
    "batch", records_outcomes=False, schemaless=False, lookup_each_batch=False,
    refresh_seconds=None, ranks_each_batch=False, dedup_events=False, stores_each_batch=False,
)  # fmt: skip
STREAMING = Mode(
    "streaming", records_outcomes=True, schemaless=True, lookup_each_batch=True,
    refresh_seconds=1.0, ranks_each_batch=True, dedup_events=True, stores_each_batch=True,
)  # fmt: skip
