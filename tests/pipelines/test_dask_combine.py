"""The Dask runner's lifted combines reduce as a tree: a worker merges two accumulators at a
time instead of gathering every bundle's accumulator of a key (memory that grew with input)."""

from __future__ import annotations

import apache_beam as beam
import pytest

db = pytest.importorskip("dask.bag")


class Recording(beam.combiners.CountCombineFn):
    """Counts, and records how many accumulators each merge was handed."""

    merges: list[int] = []

    def merge_accumulators(self, accumulators):
        accumulators = list(accumulators)
        Recording.merges.append(len(accumulators))
        return super().merge_accumulators(accumulators)


def test_tree_combine_merges_pairwise_and_gives_the_groupby_result():
    from pipelines.runners import _tree_combine

    # What the lifted combine's partial step emits: one (key, accumulator) per key and bundle.
    partials = [(k, 1) for _ in range(40) for k in ("a", "b", "c")]
    bag = db.from_sequence(partials, npartitions=20)
    Recording.merges = []
    out = dict(_tree_combine(bag, Recording()).compute(scheduler="sync"))
    assert out == {"a": [40], "b": [40], "c": [40]}  # one merged accumulator per key
    assert Recording.merges and max(Recording.merges) == 2
