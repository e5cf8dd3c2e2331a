"""The Dask runner's lifted combines reduce as a sharded tree: a worker merges two
accumulators at a time instead of gathering every bundle's accumulator of a key (memory that
grew with input), and the keys come out spread over several partitions, so what follows
the combine runs in parallel instead of as one task holding every key."""

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
    from pipelines.dask_runner import _tree_combine

    # What the lifted combine's partial step emits: one (key, accumulator) per key and bundle.
    partials = [(k, 1) for _ in range(40) for k in ("a", "b", "c")]
    bag = db.from_sequence(partials, npartitions=20)
    Recording.merges = []
    out = dict(_tree_combine(bag, Recording()).compute(scheduler="sync"))
    assert out == {"a": [40], "b": [40], "c": [40]}  # one merged accumulator per key
    assert Recording.merges and max(Recording.merges) == 2


def test_tree_combine_spreads_keys_over_partitions_each_key_in_one():
    from pipelines.dask_runner import _tree_combine

    partials = [(k, 1) for _ in range(5) for k in [*range(16), "x", ("y", 2)]]
    combined = _tree_combine(db.from_sequence(partials, npartitions=7), Recording(), shards=4)
    parts = [p.compute(scheduler="sync") for p in combined.to_delayed()]
    assert len(parts) == 4
    keys = [k for part in parts for k, _ in part]
    assert sorted(map(str, keys)) == sorted(map(str, [*range(16), "x", ("y", 2)]))  # once each
    assert all(acc == [5] for part in parts for _, acc in part)
    # Ranking's bucket keys are small ints: they spread evenly.
    assert [sorted(k for k, _ in part if isinstance(k, int)) for part in parts] == [
        list(range(j, 16, 4)) for j in range(4)
    ]


def test_an_empty_input_gives_no_groups():
    from pipelines.dask_runner import _tree_combine

    combined = _tree_combine(db.from_sequence([], npartitions=1), Recording())
    assert combined.compute(scheduler="sync") == []


def test_a_beam_outside_the_supported_range_is_refused_by_name():
    from ceap.errors import ConfigError
    from pipelines.beam_compat import check_beam_version

    check_beam_version("2.77.3")
    for version in ("2.78.0", "2.76.1", "3.0.0"):
        with pytest.raises(
            ConfigError, match=f"Apache Beam 2.77.x internals; this is Beam {version}"
        ):
            check_beam_version(version)
