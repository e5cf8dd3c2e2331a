"""``Score``: every candidate gets a score, the model that gave it and its experiment arm.

Models are loaded once per worker (``setup``) and score whole batches. When a model
fails on a batch, ``fallback: cached`` takes the last stored score for the key; rows
with none (or ``fallback: skip``) leave on the dead-letter output with the error. Rows
under ``min_score`` (or without a score when a minimum is set) are counted and dropped.

Each model has a circuit breaker per worker: after ``CIRCUIT_THRESHOLD`` consecutive
failing batches (``RunContext.extras["circuit_threshold"]`` overrides it) the model is no
longer called for the rest of the run; its rows take the same fallback path with the
reason "circuit open", the breaker's opening is counted as ``model_circuit_open`` and
raised as an alert (logged, and posted where configured: ceap/alerts.py). A dead endpoint
then costs one error per row, not one timeout.
Per-arm figures (rows over min_score and their mean score) are counted for the summary.
"""

from __future__ import annotations

import hashlib
import json
import logging
from collections import Counter

import apache_beam as beam
import numpy as np
import pyarrow as pa

from ceap import alerts, logs
from ceap.context import RunContext
from ceap.errors import ConfigError
from ceap.plugins import scorers
from ceap.resilience import CircuitBreaker
from configs.schema import ScoringConfig
from connectors.base import ORIGIN_COLUMN
from connectors.batch_coder import batches
from scorers.base import RowErrors
from scorers.experiments import assign
from stores.spec import open_store
from transforms.candidates import row_origin
from transforms.dead_letters import DEAD_LETTER, dead_letters
from transforms.filters.lookup import KeyedCounts
from transforms.funnel import counter
from transforms.outcomes import OUTCOME, emit_outcomes

log = logging.getLogger(__name__)

CIRCUIT_THRESHOLD = 3
"""Consecutive failing batches after which a model's circuit opens."""
SCORE_UNIT = 1_000_000
"""Scores are summed in counters (integers) in millionths, for the per-arm mean."""


class _ScoreFn(beam.DoFn):
    def __init__(self, scoring: ScoringConfig, context: RunContext) -> None:
        self._scoring = scoring
        self._ctx = context

    def setup(self) -> None:
        self._models = []
        for m in self._scoring.models:
            scorer = scorers.get(m.type)(m.options, m.id, self._ctx)
            scorer.setup()
            self._models.append((m, scorer))
        self._cache = None
        threshold = int(self._ctx.extras.get("circuit_threshold", CIRCUIT_THRESHOLD))
        # One breaker per model: open for the rest of the run once it trips (no half-open:
        # a batch run would only waste the rest of its time on a dead endpoint).
        self._breakers = {m.id: CircuitBreaker(threshold, cooldown=None) for m, _ in self._models}
        self._open: dict[str, str] = {}  # model id -> why its circuit opened

    def _cached(self) -> tuple[KeyedCounts, pa.Table] | None:
        if self._cache is None:
            store = open_store(self._ctx.store)
            try:
                table = store.cached_scores(self._ctx.program)
            finally:
                store.close()
            self._cache = table
        return self._cache

    def process(self, batch: pa.RecordBatch):
        ctx, program = self._ctx, self._ctx.program
        n = batch.num_rows
        arms = assign(
            self._scoring.salt or program,
            batch.column("customer_id"),
            [m.traffic for m, _ in self._models],
        )
        scores = np.full(n, np.nan)
        failed = np.zeros(n, dtype=bool)
        errors = np.full(n, None, dtype=object)
        for i, (m, scorer) in enumerate(self._models):
            rows = np.flatnonzero(arms == i)
            if len(rows):
                self._score_arm(m, scorer, batch, rows, scores, failed, errors)
        # Each row's arm names its model and treatment (gathered, not built row by row).
        model_ids = pa.array([m.id for m, _ in self._models], pa.string()).take(arms)
        treatments = pa.array([m.treatment or m.id for m, _ in self._models], pa.string())
        treatments = treatments.take(arms)
        if failed.any() and self._scoring.fallback == "cached":
            failed, model_ids = self._fallback(batch, failed, scores, model_ids)
        out = _with_scores(batch, scores, model_ids, treatments)
        if failed.any():
            bad = out.filter(pa.array(failed))
            origins = _origins(bad, ctx.mode.records_outcomes)
            counter(program, "dead_letter", "score").inc(len(origins))
            yield beam.pvalue.TaggedOutput(
                DEAD_LETTER,
                dead_letters(program, "score", bad, list(errors[failed]), origins, ctx.current()),
            )
        keep = ~failed
        min_score = self._scoring.min_score
        if min_score is not None:
            passing = ~np.isnan(scores) & (np.nan_to_num(scores, nan=-np.inf) >= min_score)
            below = keep & ~passing
            if below.any():
                counter(program, "below_min_score").inc(int(below.sum()))
                yield from emit_outcomes(ctx, out.filter(pa.array(below)), "below_min_score")
            keep &= passing
        self._count_arms(arms, keep, scores)
        if keep.all():
            yield out
        elif keep.any():
            yield out.filter(pa.array(keep))

    def _score_arm(self, m, scorer, batch: pa.RecordBatch, rows: np.ndarray, scores: np.ndarray,
                   failed: np.ndarray, errors: np.ndarray) -> None:  # fmt: skip
        """Scores one experiment arm's ``rows`` in place: ``scores``, or ``failed`` with the
        reason in ``errors`` (an open circuit, the model's error, a row's bad feature)."""
        program = self._ctx.program
        if not self._breakers[m.id].allow():
            counter(program, "model_errors", m.id).inc(len(rows))
            failed[rows] = True
            errors[rows] = self._open[m.id]
            return
        try:
            arm = batch if len(rows) == batch.num_rows else batch.take(pa.array(rows))
            part = np.asarray(scorer.score(arm), dtype=np.float64)
            if part.shape != (len(rows),):
                raise ValueError(f"returned {part.shape} scores for {len(rows)} rows")
            scores[rows] = part
            counter(program, "scored", m.id).inc(len(rows))
            self._breakers[m.id].record(ok=True)
        except RowErrors as partial:  # the model works; some rows' features do not
            bad = np.not_equal(partial.errors, None)
            scores[rows] = partial.scores
            failed[rows[bad]] = True
            errors[rows[bad]] = [f"model {m.id}: {e}"[:500] for e in partial.errors[bad]]
            counter(program, "scored", m.id).inc(int((~bad).sum()))
            counter(program, "model_errors", m.id).inc(int(bad.sum()))
            self._breakers[m.id].record(ok=True)
        except Exception as exc:  # noqa: BLE001 - a model failure is data, not a crash
            if isinstance(exc, ConfigError) and not self._ctx.mode.schemaless:
                # The program names a feature column its source lacks: every row would
                # fail, so the run does, loudly (a streaming micro-batch may just lack an
                # optional field: its rows fail as data).
                raise
            log.warning(
                "program %s: model %s failed on %d rows: %s", program, m.id, len(rows), exc,
                extra=logs.context(program=program, stage="Score", model_id=m.id),
            )  # fmt: skip
            counter(program, "model_errors", m.id).inc(len(rows))
            failed[rows] = True
            errors[rows] = f"model {m.id} failed: {type(exc).__name__}: {exc}"[:500]
            self._trip(m.id, exc)

    def _count_arms(self, arms: np.ndarray, keep: np.ndarray, scores: np.ndarray) -> None:
        """Per arm: its rows scored >= min_score and their score sum (the funnel's arm lines)."""
        program = self._ctx.program
        for i, (m, _) in enumerate(self._models):
            mine = keep & (arms == i)
            if mine.any():
                counter(program, "arm", m.id, "rows").inc(int(mine.sum()))
                total = float(np.nansum(scores[mine]))
                counter(program, "arm", m.id, "score_sum").inc(int(round(total * SCORE_UNIT)))

    def _trip(self, model_id: str, exc: Exception) -> None:
        """Counts a failing batch; at the threshold the model's circuit opens: alerted once."""
        breaker = self._breakers[model_id]
        if not breaker.record(ok=False):
            return
        program, failures = self._ctx.program, breaker.consecutive_failures
        self._open[model_id] = (
            f"model {model_id} circuit open: {failures} consecutive failing "
            f"batches, last {type(exc).__name__}: {exc}"
        )[:500]
        counter(program, "model_circuit_open", model_id).inc()
        alerts.alert(
            "model_circuit_open", program,
            f"program {program}: model {model_id} circuit open after {failures} consecutive "
            f"failing batches ({type(exc).__name__}: {exc}); not called again in this run, its "
            f"rows fall back (fallback: {self._scoring.fallback})"[:500],
            subject=model_id,
            details={"model_id": model_id, "consecutive_failures": failures,
                     "error": f"{type(exc).__name__}: {exc}"[:500],
                     "fallback": self._scoring.fallback, "run_id": self._ctx.run_id},
        )  # fmt: skip

    def _fallback(self, batch, failed, scores, model_ids: pa.Array) -> tuple[np.ndarray, pa.Array]:
        """Failed rows with a cached score take it (and its model id): returns the rows
        still failed and the model ids."""
        cache = self._cached()
        if not cache.num_rows:
            return failed, model_ids
        rows = np.flatnonzero(failed)
        sub = batch.take(pa.array(rows))
        con_keys = ["customer_id", "subject_id"]
        from ceap import arrow

        con = arrow.local_duck()
        left = pa.table(
            {
                "_i": pa.array(np.arange(len(rows))),
                **{k: arrow.as_text(sub.column(k)) for k in con_keys},
            }
        )
        cached = cache.select(["customer_id", "subject_id", "score", "model_id"])
        got = arrow.query(
            con,
            "SELECT l._i, CAST(c.score AS DOUBLE) AS score, c.model_id FROM l LEFT JOIN c "
            "USING (customer_id, subject_id) ORDER BY l._i",
            l=left,
            c=cached,
        )
        found = got.column("score").is_valid().to_numpy(zero_copy_only=False)
        hit_rows = rows[found]
        scores[hit_rows] = got.column("score").to_numpy(zero_copy_only=False)[found]
        ids = np.asarray(model_ids.to_pylist(), dtype=object)
        ids[hit_rows] = np.asarray(got.column("model_id").to_pylist(), dtype=object)[found]
        counter(self._ctx.program, "fallback").inc(len(hit_rows))
        failed = failed.copy()
        failed[hit_rows] = False
        return failed, pa.array(ids, pa.string())


def _origins(bad: pa.Table | pa.RecordBatch, streaming: bool) -> list[str]:
    """The dead-letter key of each failed row: one per input row, the same on a re-run.
    Streaming: the event's log position. Batch: the row's place in its source split (set
    by ToCandidates); a source read without positions falls back to the row's content and
    its occurrence among identical rows of the batch."""
    if ORIGIN_COLUMN in bad.schema.names:
        ids = bad.column(ORIGIN_COLUMN).to_pylist()
        return [f"event#{p}" for p in ids] if streaming else [row_origin(p) for p in ids]
    seen: Counter = Counter()
    origins = []
    for row in bad.to_pylist():
        digest = hashlib.sha256(json.dumps(row, default=str, sort_keys=True).encode())
        key = f"score:{row['customer_id']}|{row['subject_id']}|{digest.hexdigest()[:16]}"
        origins.append(f"{key}#{seen[key]}")
        seen[key] += 1
    return origins


class Score(beam.PTransform):
    """PCollection[RecordBatch] -> (scored batches, dead letters) tagged ``DEAD_LETTER``."""

    def __init__(self, scoring: ScoringConfig, context: RunContext) -> None:
        super().__init__()
        self._scoring = scoring
        self._ctx = context

    def expand(self, candidates):
        score = batches(beam.ParDo(_ScoreFn(self._scoring, self._ctx)))
        return candidates | "Models" >> score.with_outputs(DEAD_LETTER, OUTCOME, main="scored")


def _with_scores(
    batch: pa.RecordBatch, scores: np.ndarray, model_ids: pa.Array, treatments: pa.Array
) -> pa.RecordBatch:
    """The batch with its score, model_id and treatment: the model's output replaces
    same-named input columns (a source may carry "score")."""
    out = batch.drop_columns(
        [c for c in ("score", "model_id", "treatment") if c in batch.schema.names]
    )
    out = out.append_column("score", pa.array(scores, pa.float64(), mask=np.isnan(scores)))
    out = out.append_column("model_id", model_ids)
    return out.append_column("treatment", treatments)
