"""Ranking a bucket that outgrows memory: the accumulator keeps only the top rows as it
grows, and still counts what one pass over every row would (a key is one candidate however
its rows were split: a row cut early and a better one later make one duplicate)."""

from __future__ import annotations

import apache_beam as beam
import numpy as np
import pyarrow as pa
from hypothesis import given, settings
from hypothesis import strategies as st

from configs.schema import RankingConfig
from transforms.rank_acc import Acc, AccCoder
from transforms.rank_order import rank_table, top_rows
from transforms.ranking import TopN

row = st.tuples(
    st.sampled_from(["c1", "c2", "c3", "c4", "c5"]),
    st.sampled_from(["e1", "e2", "e3"]),
    st.none() | st.integers(0, 9),
    st.none() | st.integers(0, 3),
)


def table(rows) -> pa.Table:
    return pa.table({
        "customer_id": [r[0] for r in rows], "subject_id": [r[1] for r in rows],
        "score": pa.array([None if r[2] is None else r[2] / 10 for r in rows], pa.float64()),
        "event_time": pa.nulls(len(rows), pa.timestamp("us", tz="UTC")),
        "capacity": pa.array([r[3] for r in rows], pa.float64()),
    })  # fmt: skip


def keys_of(t: pa.Table) -> list[tuple[str, str]]:
    customers, subjects = t.column("customer_id").to_pylist(), t.column("subject_id").to_pylist()
    return sorted(zip(customers, subjects, strict=True))


def ranked(fn: TopN, parts: list[pa.Table]):
    accs = []
    for part in parts:  # each part a bundle, pruned as it grows, then merged
        acc = fn.create_accumulator()
        for batch in part.to_batches(max_chunksize=2):
            acc = fn.add_input(acc, batch)
        # each is compacted and crosses the shuffle, as Beam lifts the combine
        coder = fn.get_accumulator_coder()
        accs.append(coder.decode(coder.encode(fn.compact(acc))))
    out = fn.extract_output(fn.merge_accumulators(accs))
    return keys_of(out.table), out.duplicates, out.cut


@settings(max_examples=80, deadline=None)
@given(
    st.lists(row, min_size=1, max_size=30),
    st.integers(1, 3),
    st.sampled_from(["program", "subject"]),
    st.booleans(),
    st.integers(1, 4),
)
def test_pruning_as_it_grows_counts_as_one_pass(rows, top_n, per, capacity, bundles):
    cap = "capacity" if capacity and per == "subject" else None
    config = RankingConfig(top_n=top_n, per=per, top_n_column=cap)
    fn = TopN(config)
    fn._limit = 3  # prune whenever more than 3 rows are held
    data = table(rows)
    size = -(-len(rows) // bundles)
    parts = [data.slice(i, size) for i in range(0, len(rows), size)]
    group = {"program": None, "subject": "subject_id"}[per]
    one, duplicates, cut = rank_table(data, top_n, group, config.top_n_column)
    assert ranked(fn, parts) == (keys_of(one), duplicates, cut)


@settings(max_examples=25, deadline=None)
@given(
    st.integers(0, 2**32 - 1),
    st.sampled_from([1, 50, 400, 5000]),
    st.sampled_from([20, 300, 3000]),
)
def test_the_top_n_sort_keeps_what_numbering_every_key_keeps(seed, top_n, keys):
    """One group: top_rows takes a top-N sort of a few more rows than top_n, and more when
    duplicates crowd the top (a few keys with many high rows); the kept keys and their best
    rows are rank_table's."""
    rng = np.random.default_rng(seed)
    n = 6000
    hot = rng.random(n) < 0.3  # a few keys with many of the highest scores
    ids = np.where(hot, rng.integers(0, 5, n), rng.integers(0, keys, n))
    scores = np.where(hot, 0.9 + rng.random(n) / 10, np.round(rng.random(n), 2))
    data = pa.table({
        "customer_id": [f"c{i}" for i in ids], "subject_id": [f"e{i % 3}" for i in ids],
        "score": pa.array(scores, mask=rng.random(n) < 0.05),
        "event_time": pa.array(rng.integers(0, 10**6, n), pa.timestamp("us", tz="UTC")),
    })  # fmt: skip

    def rows(t: pa.Table) -> list:
        return sorted(zip(*(t.column(c).to_pylist() for c in t.column_names), strict=True), key=str)

    assert rows(top_rows(data, top_n, None)) == rows(rank_table(data, top_n, None)[0])


def test_an_accumulator_crosses_the_shuffle_as_the_rows_it_holds():
    """A table sliced from large buffers (a 10-row cut of a 200k-row batch) is encoded as
    its 10 rows, not the buffers behind it (Beam's pickle of the same slice copies them)."""
    big = pa.table({"customer_id": [f"c{i:07d}" for i in range(200_000)],
                    "subject_id": ["e1"] * 200_000,
                    "score": np.linspace(0, 1, 200_000)})  # fmt: skip
    acc = Acc()
    acc.table, acc.seen, acc.floor = big.slice(5, 10), 200_000, 0.25
    acc.dropped = [big.select(["customer_id", "subject_id"]).slice(100, 3)]
    coder = AccCoder()
    encoded = coder.encode(acc)
    back = coder.decode(encoded)
    assert len(encoded) < 10_000
    assert back.table.equals(acc.table) and back.dropped[0].equals(acc.dropped[0])
    assert (back.seen, back.floor, back.caps, back.duplicates, back.cut) == (
        200_000,
        0.25,
        None,
        0,
        0,
    )
    assert coder.estimate_size(acc) < 10_000


def test_a_bundle_crosses_the_shuffle_as_its_top_rows():
    """Beam compacts each bundle's accumulator before the shuffle: 6,000 rows in 30 subjects
    with top_n 2 cross as at most 60 rows and the cut rows' keys (every row crossed before:
    30 MB of the 5M-row audiences run's 374k scored rows, against 12.6 MB now)."""
    n = 6000
    data = pa.table({
        "customer_id": [f"c{i}" for i in range(n)], "subject_id": [f"e{i % 30}" for i in range(n)],
        "score": np.linspace(0, 1, n), "event_time": pa.nulls(n, pa.timestamp("us", tz="UTC")),
    })  # fmt: skip
    fn = TopN(RankingConfig(top_n=2, per="subject"))
    acc = fn.create_accumulator()
    for batch in data.to_batches(max_chunksize=1000):
        acc = fn.add_input(acc, batch)
    assert acc.table.num_rows == n  # below the prune limit: every row held in the bundle
    crossing = fn.compact(acc)
    assert crossing.table.num_rows == 60
    assert sum(t.num_rows for t in crossing.dropped) == n - 60
    assert list(crossing.dropped[0].column_names) == ["customer_id", "subject_id"]


def test_the_combine_result_keeps_the_accumulator_coder():
    """Beam sizes samples of every step's output with that step's coder: the combine's
    inner result step must carry AccCoder (buffer sizes), not Beam's pickling coder, which
    copied each bucket's whole result into a pickle (64 MB of the seed program's 10M rows)."""
    from apache_beam.pipeline import PipelineVisitor

    batch = pa.record_batch({"customer_id": ["c"], "subject_id": ["s"], "score": [1.0]})
    p = beam.Pipeline()
    _ = (
        p
        | beam.Create([(0, batch)]).with_output_types(tuple[int, pa.RecordBatch])
        | beam.CombinePerKey(TopN(RankingConfig(top_n=1, per="program")))
    )
    coders = {}

    class Outputs(PipelineVisitor):
        def visit_transform(self, node):
            for out in node.outputs.values():
                coders[node.full_label] = beam.coders.registry.get_coder(out.element_type)

    p.visit(Outputs())
    (result,) = [c for label, c in coders.items() if label.endswith("ParDo(CombineValuesDoFn)")]
    assert isinstance(result, beam.coders.TupleCoder)
    assert isinstance(result.coders()[1], AccCoder)


def test_a_bucket_whose_top_rows_pass_the_limit_is_not_pruned_at_every_batch():
    """Per customer with many customers the kept rows alone pass the prune limit: the next
    prune waits for twice what the last kept (it had re-pruned every row at every batch:
    one bucket of 2M customers took 14.6 s, not 4.8), and the result is one pass's."""
    n, customers = 20_000, 5_000
    rng = np.random.default_rng(5)
    data = pa.table({
        "customer_id": [f"c{i}" for i in rng.integers(0, customers, n)],
        "subject_id": [f"e{i}" for i in rng.integers(0, 3, n)],
        "score": np.round(rng.random(n), 3), "event_time": pa.nulls(n, pa.timestamp("us", tz="UTC")),
    })  # fmt: skip
    fn = TopN(RankingConfig(top_n=1, per="customer"))
    fn._limit = 1_000  # below the ~5,000 rows every prune keeps
    prunes = []
    prune = fn._prune
    fn._prune = lambda acc: prunes.append(acc.table.num_rows) or prune(acc)
    acc = fn.create_accumulator()
    for batch in data.to_batches(max_chunksize=500):
        acc = fn.add_input(acc, batch)
    assert len(prunes) <= 8, prunes  # past 1,000 rows, then twice what each kept (40 batches)
    coder = fn.get_accumulator_coder()
    out = fn.extract_output(fn.merge_accumulators([coder.decode(coder.encode(fn.compact(acc)))]))
    one, duplicates, cut = rank_table(data, 1, "customer_id")
    assert keys_of(out.table) == keys_of(one)
    assert (out.duplicates, out.cut) == (duplicates, cut)
