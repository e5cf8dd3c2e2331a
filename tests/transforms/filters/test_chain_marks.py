"""Batch runs mark a filter's removals instead of copying the kept rows after every filter:
the funnel and the rows kept are those of filtering one filter at a time, a filter that may
not see removed rows never does, and a verdict that fails on a removed row's value is
decided again without it."""

from __future__ import annotations

import apache_beam as beam
import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pytest
from apache_beam.testing.test_pipeline import TestPipeline
from apache_beam.testing.util import assert_that, equal_to

from ceap.plugins import filters
from tests.transforms.filters.test_filters import filter_chain
from transforms.filters.base import Filter, Verdict
from transforms.filters.chain import REMOVED, ApplyFilters
from transforms.funnel import Funnel

SEEN: list[int] = []
"""Rows the ``test_strict`` filter was given, batch after batch (the DirectRunner runs in
this process)."""


@filters.register("test_strict")
class _StrictFilter(Filter):
    """A plugin filter that never declared it may see removed rows: removes odd ``n``."""

    def evaluate(self, batch: pa.RecordBatch) -> Verdict:
        assert REMOVED not in batch.schema.names
        SEEN.append(batch.num_rows)
        return Verdict(pc.equal(pc.bit_wise_and(batch.column("n"), 1), 0), "odd")


@filters.register("test_picky")
class _PickyFilter(Filter):
    """Fails on a ``bad`` flag, as a cast of an unparsable value would; removes ``n % 7 == 0``."""

    sees_removed_rows = True

    def evaluate(self, batch: pa.RecordBatch) -> Verdict:
        if "bad" in batch.column("flag").to_pylist():
            raise ValueError("unparsable flag")
        return Verdict(batch.column("n").to_numpy() % 7 != 0, "sevens")


def rows(seed: int, n: int = 4000) -> list[pa.RecordBatch]:
    rng = np.random.default_rng(seed)
    ns = np.arange(n)
    score = rng.random(n)
    region = rng.choice(["eu", "us", "mars"], n, p=[0.6, 0.35, 0.05])
    flag = np.where(rng.random(n) < 0.02, "bad", "ok")
    table = pa.table({
        "customer_id": [f"c{i}" for i in ns], "subject_id": [f"p{i % 50}" for i in ns],
        "n": ns, "score": score, "region": region, "flag": flag,
    })  # fmt: skip
    return table.to_batches(max_chunksize=1000)


CHAIN = """
filters:
  - {type: expression, name: good, options: {keep: "score >= 0.1", reason: low}}
  - {type: expression, name: not_bad, options: {keep: "flag != 'bad'", reason: bad}}
  - {type: test_picky, name: picky}
  - {type: exclude_values, name: no_mars, options: {column: region, values: [mars]}}
  - {type: test_strict, name: strict}
  - {type: expression, name: good_again, options: {keep: "score >= 0.05", reason: never}}
"""


def expected(batches: list[pa.RecordBatch]) -> tuple[list[str], dict]:
    """One filter at a time, in Python: each removed row counted at its first failing filter."""
    table = pa.Table.from_batches(batches).to_pylist()
    tests = [
        ("good", "low", lambda r: r["score"] >= 0.1),
        ("not_bad", "bad", lambda r: r["flag"] != "bad"),
        ("picky", "sevens", lambda r: r["n"] % 7 != 0),
        ("no_mars", "region is an excluded value", lambda r: r["region"] != "mars"),
        ("strict", "odd", lambda r: r["n"] % 2 == 0),
        ("good_again", "never", lambda r: r["score"] >= 0.05),
    ]
    kept, counts = [], {}
    for r in table:
        failed = next(((label, why) for label, why, ok in tests if not ok(r)), None)
        if failed is None:
            kept.append(r["customer_id"])
        else:
            counts[failed] = counts.get(failed, 0) + 1
    return kept, counts


@pytest.mark.parametrize("seed", [1, 2])
def test_marked_removals_give_the_funnel_of_one_filter_at_a_time(ctx, seed):
    specs, labels = filter_chain(CHAIN)
    batches = rows(seed)
    want_kept, want_counts = expected(batches)
    SEEN.clear()
    with TestPipeline() as p:
        out = p | beam.Create(batches) | "Filters" >> ApplyFilters(specs, labels, ctx)
        columns = out.kept | beam.Map(lambda b: sorted(b.schema.names))
        kept = out.kept | beam.FlatMap(lambda b: b["customer_id"].to_pylist())
        assert_that(kept, equal_to(want_kept), label="Kept")
        names = sorted(batches[0].schema.names)
        assert_that(columns, equal_to([names] * 4), label="NoMarks")
    assert Funnel.from_result("reviews", p.result).filtered == want_counts
    # The strict filter only ever saw rows still in (its own assertion), fewer than arrived.
    assert 0 < sum(SEEN) < sum(b.num_rows for b in batches)
