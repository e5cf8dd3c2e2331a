"""``one_worker``: whether a Beam pipeline runs on one thread of this process, where work
split into parts for parallel workers only pays each part's fixed cost."""

from __future__ import annotations

from typing import Any


def one_worker(pipeline: Any) -> bool:
    """Beam's in-process runner (CEAP's default) with one worker: every bundle runs on this
    thread. Any other runner, or ``--direct_num_workers`` above 1, may run parts apart."""
    from apache_beam.options.pipeline_options import DirectOptions
    from apache_beam.runners.portability.fn_api_runner import FnApiRunner

    workers = pipeline.options.view_as(DirectOptions).direct_num_workers
    return isinstance(pipeline.runner, FnApiRunner) and workers == 1
