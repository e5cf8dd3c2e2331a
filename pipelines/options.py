"""CEAP's pipeline options, read with ``options.view_as(CeapOptions)``; every flag CEAP does
not know is a Beam option (``--runner``, ``--direct_num_workers``, ``--project`` ...)."""

from __future__ import annotations

import os

from apache_beam.options.pipeline_options import PipelineOptions, StandardOptions


class CeapOptions(PipelineOptions):
    @classmethod
    def _add_argparse_args(cls, parser) -> None:
        parser.add_argument("--program", help="program name, or 'all'")
        parser.add_argument("--mode", choices=["batch", "streaming"], default="batch")
        parser.add_argument("--config-dir", "--config_dir", dest="config_dir", default=None)
        parser.add_argument("--now", default=None, help="reference time, ISO-8601 (default: now)")
        parser.add_argument(
            "--store", default=os.environ.get("CEAP_STORE", "sqlite"),
            help="sqlite (default, $CEAP_HOME/ceap.db), sqlite:///path.db, dynamodb://prefix",
        )  # fmt: skip


def default_runner(options: PipelineOptions):
    """With no ``--runner``: Beam's in-process FnApiRunner (what the DirectRunner falls back
    to here). Named explicitly so every machine runs the same engine: the DirectRunner first
    tries to fetch and start a Prism binary, which runs streaming graphs differently."""
    if options.view_as(StandardOptions).runner:
        return None
    from apache_beam.runners.portability.fn_api_runner import FnApiRunner

    from pipelines.runner_metrics import keep_flat, short_sampling

    keep_flat()  # an endless run's metrics stay flat (pipelines/runner_metrics.py)
    short_sampling()  # a bundle's end no longer waits up to 200 ms for its sampler
    return FnApiRunner()
