"""Beam's in-process FnApiRunner, after hundreds of bundles of one streaming stage: with
``keep_flat()`` its metrics are read at a constant stack depth, with the same values."""

from __future__ import annotations

import inspect
import sys

import apache_beam as beam
from apache_beam.io.restriction_trackers import OffsetRange, OffsetRestrictionTracker
from apache_beam.io.watermark_estimators import WalltimeWatermarkEstimator
from apache_beam.metrics import monitoring_infos
from apache_beam.metrics.metric import MetricsFilter
from apache_beam.options.pipeline_options import PipelineOptions, StandardOptions
from apache_beam.runners.portability.fn_api_runner import FnApiRunner, fn_runner
from apache_beam.transforms.core import RestrictionProvider
from apache_beam.utils.timestamp import Duration

from pipelines.runner_metrics import keep_flat

BUNDLES = 300
END = 1 << 62


class DeferEachRound(beam.DoFn, RestrictionProvider):
    """An unbounded reader that emits one element a round and defers: one bundle a round,
    as the Kinesis reader's poll rounds; it ends after ``BUNDLES`` rounds."""

    @beam.DoFn.unbounded_per_element()
    def process(
        self,
        _,
        tracker=beam.DoFn.RestrictionParam(),
        watermark=beam.DoFn.WatermarkEstimatorParam(WalltimeWatermarkEstimator.default_provider()),
    ):
        start = tracker.current_restriction().start
        if start >= BUNDLES:
            tracker.try_claim(END - 1)
            return
        if tracker.try_claim(start):
            beam.metrics.Metrics.counter("test", "rounds").inc()
            yield start
            tracker.defer_remainder(Duration.of(0))

    def initial_restriction(self, _) -> OffsetRange:
        return OffsetRange(0, END)

    def create_tracker(self, restriction: OffsetRange) -> OffsetRestrictionTracker:
        return OffsetRestrictionTracker(restriction)

    def restriction_size(self, _, restriction: OffsetRange) -> int:
        return 1

    def truncate(self, _, restriction: OffsetRange) -> None:
        return None


def test_metrics_of_hundreds_of_bundles_are_read_at_a_constant_depth(monkeypatch):
    # Beam's own merge (a generator), whatever an earlier test installed; restored after.
    monkeypatch.setattr(fn_runner, "consolidate_monitoring_infos", monitoring_infos.consolidate)
    assert keep_flat()
    flat = fn_runner.consolidate_monitoring_infos
    assert keep_flat() and fn_runner.consolidate_monitoring_infos is flat  # wrapped once

    options = PipelineOptions([])
    options.view_as(StandardOptions).streaming = True
    p = beam.Pipeline(runner=FnApiRunner(), options=options)
    _ = p | beam.Impulse() | beam.ParDo(DeferEachRound()) | beam.Map(lambda x: x)
    result = p.run()
    result.wait_until_finish()

    limit = sys.getrecursionlimit()
    sys.setrecursionlimit(len(inspect.stack()) + BUNDLES // 2)  # fewer frames than bundles
    try:
        counters = result.metrics().query(MetricsFilter().with_name("rounds"))["counters"]
    finally:
        sys.setrecursionlimit(limit)
    assert [c.committed for c in counters] == [BUNDLES]


class _SamplerPeriod(beam.DoFn):
    def process(self, element):
        from apache_beam.runners.worker import statesampler

        yield statesampler.get_current_tracker().sampling_period_ms


def test_bundles_of_the_default_runner_sample_every_20_ms(tmp_path):
    """A bundle's end waits for its state sampler to wake (it joins the sampler's thread):
    with Beam's 200 ms period that was up to 0.6 s of a three-bundle batch run."""
    from pipelines.options import default_runner
    from pipelines.runner_metrics import SAMPLING_MS

    options = PipelineOptions([])
    seen = tmp_path / "period"
    with beam.Pipeline(runner=default_runner(options), options=options) as p:
        periods = p | beam.Create([1]) | beam.ParDo(_SamplerPeriod())
        _ = periods | beam.Map(lambda period: seen.write_text(str(period)))
    assert SAMPLING_MS == 20
    assert seen.read_text() == "20"
