"""The one graph both modes share: candidates -> enrichment -> filters -> scoring -> ranking ->
store + outbox, with every stage's failures flowing to the dead-letter sink.

Batch and streaming differ only in where rows come from (``pipelines/batch.py``,
``pipelines/streaming.py``) and in what happens to per-event outcomes: a streaming run
records one per event in the ledger, a batch run counts them.
"""

from __future__ import annotations

from datetime import timedelta

import apache_beam as beam

from ceap.context import RunContext
from ceap.plugins import filters
from ceap.workers import one_worker
from configs.schema import ProgramConfig
from transforms.candidates import ToCandidates
from transforms.dedup_events import DedupEvents
from transforms.enrichment import Enrich
from transforms.filters.chain import ApplyFilters
from transforms.ranking import BUCKETS, Rank
from transforms.scoring import Score
from transforms.sinks import WriteCandidates, WriteDeadLetters


def prefilter_count(program: ProgramConfig, ctx: RunContext) -> int:
    """How many leading filters read no enriched column, so they may run before the joins
    (fewer rows to join; the funnel is identical because enrichment removes no rows)."""
    if any(not spec.columns for spec in program.enrich):
        return 0  # "all columns": what enrichment adds is unknown until run time
    enriched = {c for spec in program.enrich for c in spec.columns}
    count = 0
    for spec in program.filters:
        reads = filters.get(spec.type)(spec.options, ctx).reads()
        if reads is None or reads & enriched:
            break
        count += 1
    return count


def candidate_graph(
    rows: beam.PCollection, program: ProgramConfig, ctx: RunContext
) -> list[beam.PCollection]:
    """Applies the program to source rows (Arrow batches); returns the PCollections of
    per-event outcome records (empty in batch runs)."""
    early = prefilter_count(program, ctx) if program.enrich else 0
    # A batch run's bad rows are dropped by the filter chain's first copy when one comes next.
    chain_next = early > 0 or (not program.enrich and bool(program.filters))
    mark_bad = chain_next and not (ctx.mode.records_outcomes or ctx.mode.dedup_events)
    valid = rows | "ToCandidates" >> ToCandidates(program.fields, ctx, mark_bad)
    candidates = valid.candidates
    outcomes = []
    if ctx.mode.dedup_events:
        events = program.events
        window = events.dedup_window if events else timedelta(days=1)
        lateness = events.max_lateness if events else None
        fresh = candidates | "DedupEvents" >> DedupEvents(program.fields, window, ctx, lateness)
        candidates = fresh.fresh
        outcomes.append(fresh.outcome)
    specs, labels = program.filters, program.filter_labels()
    if early:
        pre = candidates | "Prefilter" >> ApplyFilters(specs[:early], labels[:early], ctx)
        candidates = pre.kept
        outcomes += pre.outcomes
    enriched = candidates | "Enrich" >> Enrich(program.enrich, program.program)
    kept = enriched | "Filters" >> ApplyFilters(specs[early:], labels[early:], ctx)
    scored = kept.kept | "Score" >> Score(program.scoring, ctx)
    # One ranking bucket when one thread runs them all (8 let distributed workers share it).
    buckets = 1 if one_worker(rows.pipeline) else BUCKETS
    rank = Rank(program.ranking, ctx, program.fields.context, buckets)
    ranked = scored.scored | "Rank" >> rank
    stored = ranked.ranked | "Store" >> WriteCandidates(program, ctx)
    # Two dead-letter sinks rather than a Flatten: the streaming graph must stay one fused
    # stage (the FnApiRunner materialises a Flatten's inputs until their stage ends).
    dead = valid.dead_letter | "DeadLetters" >> WriteDeadLetters(ctx)
    failed = scored.dead_letter | "ScoreDeadLetters" >> WriteDeadLetters(ctx)
    outcomes += [*kept.outcomes, scored.outcome, ranked.outcome, stored, dead, failed]
    return outcomes
