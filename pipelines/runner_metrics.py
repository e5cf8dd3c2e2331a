"""Endless streaming runs on Beam's in-process FnApiRunner: the run's metrics stay flat.

``FnApiRunner.run_stages`` (Beam 2.77) adds each finished bundle's metrics to its stage's,
and to the pipeline's, as ``consolidate(chain(this_bundle, previous))``. ``consolidate`` is
a generator, so nothing is added up until ``result.metrics()`` is read: after N bundles the
result holds N generators, each wrapping the one before (and every bundle's metrics). Reading
them, at the end of the run (``Funnel.from_result``), recurses N deep: past about 1,000
bundles, Python's recursion limit, the run ends in ``RecursionError`` and writes no ``runs``
row. A streaming source ends a bundle each time it defers: the Kinesis reader each poll
round (about one bundle a second with the default ``poll_seconds: 1``, five with 0.2),
so a run of a few minutes to a quarter of an hour failed on its stop; the event log holds a
bundle 30 s, so it would reach the limit after about 8 hours. ``default_runner``
(pipelines/options.py) calls ``keep_flat()`` whenever it hands out the in-process runner.

``keep_flat()`` makes the runner add a bundle's metrics up as the bundle ends: the same
values (sums and distributions add up in any order), one list per stage, so reading them
takes the same stack after a minute or a month, and a long run no longer keeps every
bundle's counters in memory (metrics Beam cannot add up, gauges and string sets, are still
kept one per bundle: the streaming graph has none). It replaces the name ``run_stages``
looks up, ``fn_runner.consolidate_monitoring_infos``; a Beam without it is left as it is.

``short_sampling()``: each bundle's state sampler (the per-step times of
``pipelines/stage_times.py``) sleeps up to its period, 200 ms by default, between samples,
and the bundle's end waits for it to wake (``StateSampler.stop`` joins its thread). A
batch run has three bundles that each last seconds: up to 0.6 s of every run went to that
wait, more on long runs than on short ones. With 20 ms the wait is at most 20 ms per
bundle, and the step times are sampled finer.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable
from typing import Any

log = logging.getLogger(__name__)

SAMPLING_MS = 20
"""The in-process runner's state sampling period (Beam's default: 200 ms)."""


def _consolidate_now(consolidate: Callable[..., Iterable[Any]]) -> Callable[..., list[Any]]:
    def consolidate_now(metrics: Iterable[Any], *args: Any, **kwargs: Any) -> list[Any]:
        return list(consolidate(metrics, *args, **kwargs))

    consolidate_now._ceap_flat = True  # type: ignore[attr-defined]
    return consolidate_now


def keep_flat() -> bool:
    """Makes the in-process FnApiRunner add each bundle's metrics up when the bundle ends
    (idempotent); returns whether the runner now does."""
    try:
        from apache_beam.runners.portability.fn_api_runner import fn_runner
    except ImportError:  # pragma: no cover - a Beam without the in-process runner
        return False
    consolidate = getattr(fn_runner, "consolidate_monitoring_infos", None)
    if consolidate is None:
        log.debug("fn_runner.consolidate_monitoring_infos is gone: nothing to flatten")
        return False
    if not getattr(consolidate, "_ceap_flat", False):
        fn_runner.consolidate_monitoring_infos = _consolidate_now(consolidate)
    return True


def short_sampling() -> bool:
    """Makes the in-process runner's bundles sample their state every ``SAMPLING_MS``
    (idempotent); returns whether they now do."""
    try:
        from apache_beam.runners.worker.statesampler import StateSampler
    except ImportError:  # pragma: no cover - a Beam without the worker's state sampler
        return False
    defaults = StateSampler.__init__.__defaults__
    if defaults != (SAMPLING_MS,):
        if not defaults or len(defaults) != 1:
            log.debug("StateSampler takes other defaults (%s): its period is left", defaults)
            return False
        StateSampler.__init__.__defaults__ = (SAMPLING_MS,)
    return True
