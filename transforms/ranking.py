"""``Rank``: the best ``top_n`` candidates per program, subject or customer; with
``top_n_column`` each group's own cap is read from its rows (an event's capacity; the
largest whole value among all the group's rows, a key's repeats included; ``top_n`` where
it has none; NaN is none).

The order (``transforms/rank_order.py``) is total and deterministic: score (high first,
missing last), then the most recent event, then customer_id and subject_id. Rows
repeating a candidate key (program, customer_id, subject_id) collapse to the best one
first: a key is one candidate, the others are counted as ranked out ("duplicate key").
The work is a combine whose accumulator is an Arrow table pruned to the top rows as it
grows, keyed by a bucket of the ranking group, so memory stays bounded by top_n x groups
and buckets run in parallel.
"""

from __future__ import annotations

from typing import NamedTuple

import apache_beam as beam
import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from ceap import arrow
from ceap.context import RunContext
from configs.schema import RankingConfig
from connectors.base import BATCH_ROWS, ORIGIN_COLUMN
from connectors.batch_coder import batches
from transforms.funnel import counter
from transforms.outcomes import IDENTITY_COLUMN, OUTCOME, emit_outcomes
from transforms.rank_acc import Acc, AccCoder
from transforms.rank_order import rank_table, top_rows

GROUP_COLUMN = {"program": None, "subject": "subject_id", "customer": "customer_id"}
BUCKETS = 8
CAP = "_ceap_cap"
POSITION = "_ceap_position"


@beam.typehints.with_input_types(pa.RecordBatch)
@beam.typehints.with_output_types(Acc)
class TopN(beam.CombineFn):
    """Declared types: the combine's inner steps then carry ``AccCoder``, not Beam's pickling
    coder, which copied each bucket's whole result into a pickle to size a sample (64 MB,
    0.2 s of the seed program's 10M-row run)."""

    def __init__(self, ranking: RankingConfig) -> None:
        self._top_n = ranking.top_n
        self._group = GROUP_COLUMN[ranking.per]
        self._cap = ranking.top_n_column
        self._limit = max(2 * (ranking.top_n or 0), 4 * BATCH_ROWS)

    def create_accumulator(self) -> Acc:
        return Acc()

    def get_accumulator_coder(self) -> AccCoder:
        return AccCoder()

    def add_input(self, acc: Acc, batch: pa.RecordBatch) -> Acc:
        acc.seen += batch.num_rows
        table = pa.Table.from_batches([batch])
        if acc.floor is not None:  # top_n distinct keys already score higher: count the key only
            below = pc.fill_null(pc.less(table.column("score"), acc.floor), False)
            if pc.any(below).as_py():
                acc.dropped.append(_keys(table).filter(below))
                table = table.filter(pc.invert(below))
        acc.table = _concat(acc.table, table)
        # Twice what the last prune kept, at least: a bucket whose top rows alone pass the
        # limit (per customer, millions of them) is not pruned again at every batch.
        return self._prune(acc) if acc.table.num_rows > max(self._limit, 2 * acc.kept) else acc

    def merge_accumulators(self, accs) -> Acc:
        out = Acc()
        for acc in accs:
            out.seen += acc.seen
            if acc.table is not None:
                out.table = _concat(out.table, acc.table)
            out.dropped += acc.dropped
            if acc.floor is not None:  # each holds top_n keys above its floor: the higher one
                out.floor = max(out.floor, acc.floor) if out.floor is not None else acc.floor
            if acc.caps is not None:  # one row per group: its largest cap of all
                out.caps = _group_max(_concat(out.caps, acc.caps))
            out.kept = max(out.kept, acc.kept)
        too_big = out.table is not None and out.table.num_rows > max(self._limit, 2 * out.kept)
        return self._prune(out) if too_big else out

    def compact(self, acc: Acc) -> Acc:
        """Beam calls this on each bundle's accumulator before the shuffle: pruned there, the
        top rows and the cut rows' keys cross it instead of every row."""
        rows = acc.table.num_rows if acc.table is not None else 0
        if rows > (self._top_n or 0) and rows != acc.kept:  # not pruned already as it is
            return self._prune(acc)
        return acc

    def extract_output(self, acc: Acc) -> Acc:
        if acc.table is None:
            return acc
        distinct = _count_distinct([_keys(acc.table), *acc.dropped])
        acc.table = self._rank(acc.table, acc.caps)
        acc.duplicates = acc.seen - distinct  # a key is one candidate, whenever its rows came
        acc.cut = distinct - acc.table.num_rows
        return acc

    def _prune(self, acc: Acc) -> Acc:
        """Keeps the top rows so far (memory stays bounded by top_n x groups), remembering
        the keys it drops for the final count. With ``top_n_column`` a group's cap is the
        largest of all its rows, rows not seen yet included: only duplicates go early, and
        their caps are kept per group."""
        before = acc.table
        if self._cap is not None and self._group and self._cap in before.column_names:
            acc.caps = _group_max(_concat(acc.caps, _caps(before, self._group, self._cap)))
            acc.table = rank_table(before, None, None)[0]
            acc.kept = acc.table.num_rows
            return acc  # every key stays: nothing to remember
        numbered = before.append_column(POSITION, pa.array(np.arange(before.num_rows)))
        kept = top_rows(numbered, self._top_n, self._group, self._cap)
        cut = np.ones(before.num_rows, bool)
        cut[kept.column(POSITION).to_numpy()] = False  # by position: no key text to compare
        acc.dropped.append(_keys(before).filter(pa.array(cut)))
        acc.table = kept.drop_columns([POSITION])
        acc.kept = acc.table.num_rows
        if self._group is None and acc.table.num_rows == self._top_n:
            acc.floor = _lowest_score(acc.table, acc.floor)
        return acc

    def _rank(self, table: pa.Table, caps: pa.Table | None) -> pa.Table:
        """``rank_table``, each group's cap also counting the rows pruned before."""
        cap = self._cap
        if caps is None or cap is None or cap not in table.column_names or not self._group:
            return top_rows(table, self._top_n, self._group, cap)
        own = _caps(table, self._group, cap)
        earlier = caps.column("cap").take(pc.index_in(own.column("g"), value_set=caps.column("g")))
        both = pc.max_element_wise(own.column("cap"), earlier, skip_nulls=True)
        ranked = rank_table(table.append_column(CAP, both), self._top_n, self._group, CAP)[0]
        return ranked.drop_columns([CAP])


def _lowest_score(top: pa.Table, floor: float | None) -> float | None:
    """The lowest score among the kept top rows, when every one has a number (a null or NaN
    score sorts apart: then no floor), never below the floor already known."""
    scores = top.column("score")
    if scores.null_count or pc.any(pc.is_nan(scores)).as_py():
        return floor
    lowest = pc.min(scores).as_py()
    return lowest if floor is None else max(floor, lowest)


def _keys(table: pa.Table) -> pa.Table:
    """Each row's candidate key: its customer and subject columns (text since ToCandidates)."""
    return table.select(["customer_id", "subject_id"])


def _count_distinct(chunks: list[pa.Table]) -> int:
    """Distinct keys over every chunk (one DuckDB aggregate over both columns, on both
    cores; no key text is built)."""
    return arrow.distinct_rows(pa.concat_tables(chunks, promote_options="permissive"))


def _caps(table: pa.Table, group: str, cap: str) -> pa.Table:
    values = pc.cast(table.column(cap), pa.float64(), safe=False)
    return pa.table({"g": arrow.as_text(table.column(group).combine_chunks()), "cap": values})


def _group_max(caps: pa.Table) -> pa.Table:
    """One row per group: its largest cap (NaN and null are no cap)."""
    values = caps.column("cap")
    caps = caps.filter(pc.and_(pc.is_valid(values), pc.invert(pc.is_nan(values))))
    return caps.group_by("g").aggregate([("cap", "max")]).rename_columns(["g", "cap"])


def _concat(a: pa.Table | None, b: pa.Table) -> pa.Table:
    if a is None:
        return b
    return pa.concat_tables([a, b], promote_options="permissive")


def _bucket_key(group: str | None, buckets: int):
    def key(batch: pa.RecordBatch):
        if group is None or buckets == 1:
            yield 0, batch
            return
        ids = pa.table({"g": pc.cast(batch.column(group), pa.string())})
        parts = arrow.query(
            arrow.local_duck(), f"SELECT hash(g) % {int(buckets)} AS b FROM ids", ids=ids
        ).column("b")
        parts = parts.to_numpy()
        for b in sorted(set(parts.tolist())):
            yield int(b), batch.filter(pa.array(parts == b))

    return key


class _Emit(beam.DoFn):
    def __init__(self, program: str) -> None:
        self._program = program

    def process(self, keyed):
        _, acc = keyed
        if acc.duplicates:
            counter(self._program, "ranked_out", "duplicate key").inc(acc.duplicates)
        if acc.cut:
            counter(self._program, "ranked_out", "below top_n").inc(acc.cut)
        if acc.table is not None and acc.table.num_rows:
            count_candidates(self._program, acc.table)
            # DuckDB hands back 2k-row chunks; downstream steps cost per batch, so re-chunk.
            yield from acc.table.combine_chunks().to_batches(max_chunksize=BATCH_ROWS)


RANKED_COLUMNS = [
    "customer_id",
    "subject_id",
    "event_time",
    "score",
    "model_id",
    "treatment",
    "timezone",
]


def _project(batch: pa.RecordBatch, keep: list[str]) -> pa.RecordBatch:
    return batch.select([c for c in keep if c in batch.schema.names])


def count_candidates(program: str, table: pa.Table) -> None:
    """The candidates that made it, in all and per experiment arm (model id)."""
    counter(program, "candidates").inc(table.num_rows)
    if "model_id" in table.column_names:
        for item in pc.value_counts(table.column("model_id")).to_pylist():
            if item["values"] is not None:
                counter(program, "arm", item["values"], "candidates").inc(item["counts"])


class RankOutputs(NamedTuple):
    ranked: beam.PCollection
    outcome: beam.PCollection


class _RankEachFn(beam.DoFn):
    """Streaming: each micro-batch ranked on its own (a global ranking would wait for a
    window to close; asks are reactive), recording the rows it drops."""

    def __init__(self, ranking: RankingConfig, keep: list[str], context: RunContext) -> None:
        self._ranking = ranking
        self._keep = keep
        self._ctx = context

    def process(self, batch: pa.RecordBatch):
        table = pa.Table.from_batches([_project(batch, self._keep)])
        ranked, duplicates, cut = rank_table(
            table, self._ranking.top_n, GROUP_COLUMN[self._ranking.per], self._ranking.top_n_column
        )
        program = self._ctx.program
        if duplicates:
            counter(program, "ranked_out", "duplicate key").inc(duplicates)
        if cut:
            counter(program, "ranked_out", "below top_n").inc(cut)
        if duplicates or cut:
            kept = pc.is_in(table.column(ORIGIN_COLUMN), value_set=ranked.column(ORIGIN_COLUMN))
            yield from emit_outcomes(self._ctx, table.filter(pc.invert(kept)), "ranked_out")
        if ranked.num_rows:
            count_candidates(program, ranked)
            yield from ranked.combine_chunks().to_batches(max_chunksize=BATCH_ROWS)


class Rank(beam.PTransform):
    """PCollection[RecordBatch] (scored) -> RankOutputs(candidates, outcome records).

    Args:
      ranking: the program's ``ranking:`` block.
      context: the run (program name; streaming ranks each micro-batch on its own).
      carry: further columns the sinks need (the context columns).
      buckets: parts of the ranking group (per subject or customer) combined apart, so
        workers can share them; on one worker each part only adds its own queries (one
        bucket: audiences 5M, Rank 0.25 -> 0.13 s).
    """

    def __init__(
        self,
        ranking: RankingConfig,
        context: RunContext,
        carry: list[str] | None = None,
        buckets: int = BUCKETS,
    ) -> None:
        super().__init__()
        self._ranking = ranking
        self._ctx = context
        self._buckets = buckets
        extra = [ORIGIN_COLUMN, IDENTITY_COLUMN] if context.mode.records_outcomes else []
        cap = [ranking.top_n_column] if ranking.top_n_column else []
        self._keep = list(dict.fromkeys(RANKED_COLUMNS + list(carry or []) + cap + extra))

    def expand(self, scored) -> RankOutputs:
        if self._ctx.mode.ranks_each_batch:
            out = scored | "RankEach" >> batches(
                beam.ParDo(_RankEachFn(self._ranking, self._keep, self._ctx))
            ).with_outputs(OUTCOME, main="ranked")
            return RankOutputs(out.ranked, out[OUTCOME])
        ranked = (
            scored
            # Only what the sinks need crosses the shuffle: less to sort, concat and pickle.
            | "Project" >> batches(beam.Map(_project, self._keep))
            | "Bucket"
            >> beam.FlatMap(
                _bucket_key(GROUP_COLUMN[self._ranking.per], self._buckets)
            ).with_output_types(tuple[int, pa.RecordBatch])
            | "TopN" >> beam.CombinePerKey(TopN(self._ranking)).with_output_types(tuple[int, Acc])
            | "Emit" >> batches(beam.ParDo(_Emit(self._ctx.program)))
        )
        return RankOutputs(ranked, ranked.pipeline | "NoOutcomes" >> beam.Create([]))
