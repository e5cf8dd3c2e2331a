"""Runner-specific helpers: options checked before submit, and the DaskRunner made whole.

``validate_runner_options`` fails fast, with a ``ConfigError`` naming the flag to add,
where Beam would otherwise fail minutes later on a remote service (or silently write to a
SQLite file on one worker's disk).

``normalize_beam_args`` swaps Beam's ``DaskRunner`` for ``CeapDaskRunner``
(``pipelines/dask_runner.py``). Beam 2.77's DaskRunner only runs linear graphs: it feeds
every output of a multi-output ParDo to every consumer (our stages have tagged outputs),
computes only the last transform it visited (the other sinks never run), drops what
``finish_bundle`` emits, does not lift combiners (one key's values end up in one list),
reports no metrics, and holds each step's whole output per partition in memory.
"""

from __future__ import annotations

import ipaddress
import urllib.parse

from apache_beam.options.pipeline_options import (
    DebugOptions,
    FlinkRunnerOptions,
    GoogleCloudOptions,
    PipelineOptions,
    PortableOptions,
    SetupOptions,
    StandardOptions,
    WorkerOptions,
)

from ceap.errors import ConfigError
from pipelines.options import CeapOptions
from stores.spec import StoreSpec

DASK_RUNNER = "pipelines.runners.CeapDaskRunner"
_BEAM_DASK = {"DaskRunner", "apache_beam.runners.dask.dask_runner.DaskRunner"}
_REMOTE = {"DataflowRunner", "FlinkRunner", "SparkRunner", "PortableRunner", "PrismRunner"}
"""Runners whose workers may sit on other machines: SQLite on local disk cannot be the store."""


def runner_name(options: PipelineOptions) -> str:
    """The runner's class name (``DataflowRunner``), whether given short or dotted."""
    return (options.view_as(StandardOptions).runner or "").rsplit(".", 1)[-1]


def normalize_beam_args(beam_args: list[str]) -> list[str]:
    """Returns ``beam_args`` with Beam's DaskRunner replaced by ``CeapDaskRunner``."""
    out, i = [], 0
    while i < len(beam_args):
        arg = beam_args[i]
        if arg == "--runner" and i + 1 < len(beam_args) and beam_args[i + 1] in _BEAM_DASK:
            out += ["--runner", DASK_RUNNER]
            i += 2
            continue
        if arg.startswith("--runner=") and arg.split("=", 1)[1] in _BEAM_DASK:
            arg = f"--runner={DASK_RUNNER}"
        out.append(arg)
        i += 1
    return out


def prepare_beam_args(
    beam_args: list[str], store: str | None = None, streaming: bool = False
) -> list[str]:
    """The run's Beam flags with the Dask runner swapped in, checked before anything is
    submitted (every entry point: batch, streaming and export)."""
    beam_args = normalize_beam_args(beam_args)
    validate_runner_options(PipelineOptions(beam_args), store=store, streaming=streaming)
    return beam_args


def validate_runner_options(
    options: PipelineOptions, store: str | None = None, streaming: bool = False
) -> None:
    """Raises ``ConfigError`` listing every problem found in the runner's options.

    Args:
      options: the run's pipeline options (Beam's and CEAP's flags).
      store: the store spec the run writes to (``RunContext.store``); default ``--store``.
      streaming: the run is a streaming one (``--mode streaming``).
    """
    name = runner_name(options)
    problems: list[str] = []
    if streaming and name in ("CeapDaskRunner", "DaskRunner"):
        problems.append(
            "the Dask runner runs batch graphs only (Dask has no unbounded sources); run "
            "--mode streaming in-process (the default), on Dataflow or on Flink"
        )
    if name in ("DataflowRunner", "TestDataflowRunner"):
        problems += _dataflow_problems(options)
    if name == "FlinkRunner":
        master = options.view_as(FlinkRunnerOptions).flink_master
        if master in ("[auto]", "[local]", "", None):
            problems.append(
                "FlinkRunner needs --flink_master host:8081 (the JobManager's REST address); "
                "the embedded '[auto]'/'[local]' cluster downloads a job server jar"
            )
        env = (options.view_as(PortableOptions).environment_type or "").upper()
        if env in ("", "DOCKER") and not options.view_as(PortableOptions).environment_config:
            problems.append(
                "FlinkRunner: pass --environment_type=DOCKER --environment_config=<image with "
                "ceap installed> (or EXTERNAL/PROCESS, or LOOPBACK for a local test cluster); "
                "the default Beam image lacks ceap"
            )
    store = store or options.view_as(CeapOptions).store or "sqlite"
    if StoreSpec.parse(store).local and _distributed(options, name):
        problems.append(
            f"--store {store}: the embedded SQLite store is a file on one machine, and "
            f"{name} workers run elsewhere; use --store dynamodb://<table-prefix>?region=..."
        )
    if problems:
        raise ConfigError(f"{name} options: " + "; ".join(problems))


def _dataflow_problems(options: PipelineOptions) -> list[str]:
    gcp = options.view_as(GoogleCloudOptions)
    problems = [
        f"DataflowRunner needs --{flag}"
        for flag in ("project", "region", "temp_location")
        if not getattr(gcp, flag)
    ]
    for flag in ("temp_location", "staging_location"):
        value = getattr(gcp, flag)
        if value and not value.startswith("gs://"):
            problems.append(f"--{flag} must be a gs:// path (got {value!r})")
    setup = options.view_as(SetupOptions)
    if not (setup.setup_file or options.view_as(WorkerOptions).sdk_container_image):
        problems.append(
            "DataflowRunner workers need CEAP installed: pass --setup_file ./setup.py or "
            "--sdk_container_image <image built from docs/runners.md>"
        )
    experiments = options.view_as(DebugOptions).experiments or []
    if "disable_runner_v2" in experiments:
        problems.append(
            "CEAP needs Runner v2 (batched DoFns, portable graph): drop disable_runner_v2"
        )
    return problems


def _distributed(options: PipelineOptions, name: str) -> bool:
    """True where workers may run on another machine than the one holding the SQLite file."""
    if name in _REMOTE or name == "TestDataflowRunner":
        return True
    if name == "CeapDaskRunner" or name == "DaskRunner":
        from apache_beam.runners.dask.dask_runner import DaskOptions

        address = options.view_as(DaskOptions).address
        return bool(address) and not _loopback(address)
    return False


def _loopback(address: str) -> bool:
    host = urllib.parse.urlparse(address if "://" in address else f"tcp://{address}").hostname
    if host in (None, "localhost"):
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def __getattr__(name: str):
    # Built on first use: importing Dask (and Beam's Dask runner) costs ~1 s, and Dask is an
    # optional extra (``pip install .[dask]``).
    if name == "CeapDaskRunner":
        from pipelines.dask_runner import CeapDaskRunner

        globals()[name] = CeapDaskRunner
        return CeapDaskRunner
    raise AttributeError(name)
