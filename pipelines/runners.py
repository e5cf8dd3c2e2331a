"""Runner-specific helpers: options checked before submit, Dataflow's dry run made whole,
and the DaskRunner made whole.

``validate_runner_options`` fails fast, with a ``ConfigError`` naming the flag to add,
where Beam would otherwise fail minutes later on a remote service (or silently write to a
SQLite file on one worker's disk).

``normalize_beam_args`` swaps a Dataflow dry run's runner for ``DataflowDryRunner`` (below:
the complete job, described offline and written to ``--dataflow_job_file``), and Beam's
``DaskRunner`` for ``CeapDaskRunner`` (``pipelines/dask_runner.py``). Beam 2.77's DaskRunner
only runs linear graphs: it feeds every output of a multi-output ParDo to every consumer
(our stages have tagged outputs), computes only the last transform it visited (the other
sinks never run), drops what ``finish_bundle`` emits, does not lift combiners (one key's
values end up in one list), reports no metrics, and holds each step's whole output per
partition in memory.
"""

from __future__ import annotations

import ipaddress
import os
import sys
import urllib.parse

from apache_beam.io.filesystems import FileSystems
from apache_beam.metrics.metric import MetricResults
from apache_beam.options.pipeline_options import (
    DebugOptions,
    FlinkRunnerOptions,
    GoogleCloudOptions,
    PipelineOptions,
    PortableOptions,
    SetupOptions,
    StandardOptions,
    TestOptions,
    WorkerOptions,
)
from apache_beam.runners.dataflow.dataflow_runner import DataflowRunner
from apache_beam.runners.runner import PipelineResult, PipelineState

from ceap.errors import ConfigError
from pipelines.options import CeapOptions
from stores.spec import StoreSpec

DASK_RUNNER = "pipelines.runners.CeapDaskRunner"
_BEAM_DASK = {"apache_beam.runners.dask.dask_runner.DaskRunner"}
DATAFLOW_DRY_RUN = "pipelines.runners.DataflowDryRunner"
_BEAM_DATAFLOW = {
    "apache_beam.runners.DataflowRunner", "apache_beam.runners.dataflow.DataflowRunner",
    "apache_beam.runners.dataflow.dataflow_runner.DataflowRunner",
}  # fmt: skip
_AS_TYPED = {"CeapDaskRunner": "DaskRunner", "DataflowDryRunner": "DataflowRunner"}
_KNOWN = {
    path.rsplit(".", 1)[-1].lower(): path
    for path in (*StandardOptions.ALL_KNOWN_RUNNERS, *_BEAM_DASK)
}
_DATAFLOW = {"DataflowRunner", "TestDataflowRunner", "DataflowDryRunner"}
_DASK = {"CeapDaskRunner", "DaskRunner"}
_REMOTE = {"DataflowRunner", "FlinkRunner", "SparkRunner", "PortableRunner", "PrismRunner"}
"""Runners whose workers may sit on other machines: SQLite on local disk cannot be the store."""


def qualified_runner(text: str) -> str:
    """The runner ``--runner text`` names, as Beam resolves it (``create_runner``): a short
    name in any case, with or without ``Runner`` (``dataflow``, ``DaskRunner``), or a dotted
    path as given. ``--runner dataflow`` skipped every check below when only the exact
    class name was compared."""
    key = text.lower()
    return _KNOWN.get(key, _KNOWN.get(key + "runner", text))


def runner_name(options: PipelineOptions) -> str:
    """The runner's class name (``DataflowRunner``), however it was given."""
    return qualified_runner(options.view_as(StandardOptions).runner or "").rsplit(".", 1)[-1]


def on_dataflow(beam_args: list[str]) -> bool:
    """Whether the run goes to Dataflow (a dry run too): workers that never share this
    machine's disk."""
    return runner_name(PipelineOptions(beam_args)) in _DATAFLOW


def worker_disk(beam_args: list[str]) -> tuple[str, bool]:
    """Where the run's workers are, for ``pipelines/local_paths.py``: ``shared`` (this
    machine: in-process, a loopback Dask cluster, a portable runner's LOOPBACK workers),
    ``dataflow``, or ``elsewhere``; and whether they run a custom image."""
    options = PipelineOptions(beam_args)
    name = runner_name(options)
    image = bool(options.view_as(WorkerOptions).sdk_container_image)
    if name in _DATAFLOW:
        return "dataflow", image
    loopback = (options.view_as(PortableOptions).environment_type or "").upper() == "LOOPBACK"
    if _distributed(options, name) and not (loopback and name in _REMOTE):
        return "elsewhere", image
    return "shared", image


def normalize_beam_args(beam_args: list[str]) -> list[str]:
    """Returns ``beam_args`` with Beam's DaskRunner replaced by ``CeapDaskRunner``, and a
    Dataflow dry run's ``DataflowRunner`` by ``DataflowDryRunner``."""
    swap = {name: DASK_RUNNER for name in _BEAM_DASK}
    dry_run = PipelineOptions(beam_args).view_as(TestOptions).dry_run
    if dry_run:  # truthy as Beam reads it: Beam skips the submission on any value given
        swap |= {name: DATAFLOW_DRY_RUN for name in _BEAM_DATAFLOW}
    out, i = [], 0
    while i < len(beam_args):
        arg = beam_args[i]
        if arg == "--runner" and i + 1 < len(beam_args):
            out += ["--runner", swap.get(qualified_runner(beam_args[i + 1]), beam_args[i + 1])]
            i += 2
            continue
        if arg.startswith("--runner="):
            given = arg.split("=", 1)[1]
            arg = f"--runner={swap.get(qualified_runner(given), given)}"
        out.append(arg)
        i += 1
    return out


def prepare_beam_args(
    beam_args: list[str], store: str | None = None, streaming: bool = False
) -> list[str]:
    """The run's Beam flags with the Dask runner swapped in, checked before anything is
    submitted (every entry point: batch, streaming and export).

    Also hands the flags to Beam's filesystems, as building a ``Pipeline`` does: the driver
    lists and reads files before it builds one (``check_columns`` reads the sources'
    footers), and Beam's S3 filesystem with no options refused every s3:// source ("Must
    provide one of client or options") on every runner; ``--s3_endpoint_url`` and the other
    ``--s3_*`` flags now apply there too.

    The flags returned name the run's store and mode: ``run.py`` takes ``--store`` and
    ``--mode`` off the command line, and a Dataflow job's recorded options showed
    ``CeapOptions``' defaults instead (``store: sqlite``, ``mode: batch`` on a streaming job
    writing to DynamoDB)."""
    beam_args = normalize_beam_args(beam_args)
    beam_args += [f"--store={store}"] if store else []
    beam_args += ["--mode=streaming"] if streaming else []
    options = PipelineOptions(beam_args)
    validate_runner_options(options, store=store, streaming=streaming)
    FileSystems.set_options(options)
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
    shown = _AS_TYPED.get(name, name)  # the runner the user asked for, not CEAP's stand-in
    problems: list[str] = []
    if streaming and name in _DASK:
        problems.append(
            "the Dask runner runs batch graphs only (Dask has no unbounded sources); run "
            "--mode streaming in-process (the default), on Dataflow or on Flink"
        )
    if name in _DATAFLOW:
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
            f"{shown} workers run elsewhere; use --store dynamodb://<table-prefix>?region=..."
            + _dask_hint(options, name)
        )
    if problems:
        raise ConfigError(f"{shown} options: " + "; ".join(problems))


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
    if name in _REMOTE or name in _DATAFLOW:
        return True
    if name in _DASK:
        from apache_beam.runners.dask.dask_runner import DaskOptions

        dask = options.view_as(DaskOptions)
        if dask.scheduler_file:
            return not _loopback(_scheduler_address(dask.scheduler_file))
        return bool(dask.address) and not _loopback(dask.address)
    return False


def _dask_hint(options: PipelineOptions, name: str) -> str:
    """What a Dask user reads after the SQLite refusal: why its cluster counts as remote."""
    if name not in _DASK:
        return ""
    from apache_beam.runners.dask.dask_runner import DaskOptions

    scheduler_file = options.view_as(DaskOptions).scheduler_file
    unread = ""
    if scheduler_file and not _scheduler_address(scheduler_file):
        unread = f"--dask_scheduler_file {scheduler_file} has no address to read; "
    return (f" ({unread}for a Dask cluster on this machine, name its scheduler "
            "--dask_client_address=tcp://127.0.0.1:PORT)")  # fmt: skip


def _scheduler_address(scheduler_file: str) -> str:
    """The address a Dask scheduler file names (``{"address": "tcp://host:port"}``);
    ``""`` (not loopback: workers may be anywhere) when it cannot be read."""
    import json

    try:
        with open(scheduler_file) as f:
            address = json.load(f).get("address")
    except (OSError, ValueError, AttributeError):
        return ""
    return address if isinstance(address, str) else ""


def _loopback(address: str) -> bool:
    if not address:
        return False
    host = urllib.parse.urlparse(address if "://" in address else f"tcp://{address}").hostname
    if host in (None, "localhost"):
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


class _NoMetrics(MetricResults):
    """A dry run's counters: none (nothing ran)."""

    def query(self, filter=None) -> dict[str, list]:
        kinds = ("COUNTERS", "DISTRIBUTIONS", "GAUGES", "STRINGSETS", "BOUNDED_TRIES", "HISTOGRAMS")
        return {getattr(MetricResults, kind): [] for kind in kinds}


class DryRunResult(PipelineResult):
    """A dry run's result: done, no counters, the job that was not submitted (``job``,
    Beam's ``apiclient.Job``, described as a submission would send it) and what the
    submission would have staged (``staged``: {gs:// destination: local source})."""

    def __init__(self, job, staged: dict[str, str]) -> None:
        super().__init__(PipelineState.DONE)
        self.job = job
        self.staged = staged

    def wait_until_finish(self, duration=None) -> str:
        return self.state

    def metrics(self) -> MetricResults:
        return _NoMetrics()


def run_status(result: PipelineResult, funnel) -> str:
    """A finished run's ``runs.status``: ``dry_run`` for a job built and not submitted (its
    empty funnel is not a run that found nothing), else ``degraded`` or ``ok``."""
    if isinstance(result, DryRunResult):
        return "dry_run"
    return "degraded" if funnel.degraded() else "ok"


class DataflowDryRunner(DataflowRunner):
    """``--runner DataflowRunner --dry_run=True`` (swapped in by ``normalize_beam_args``):
    the complete Dataflow job, built offline and not submitted.

    Beam's own dry run stops as soon as the graph is translated: its result's ``metrics()``
    raises ``NotImplementedError`` (every CEAP command failed there, after the build, with
    an empty reason), the job has no environment yet, and ``--dataflow_job_file`` is not
    written. This runner goes on as ``DataflowApplicationClient.create_job`` would, up to
    the request: it describes the job (worker pool, container images, the packages it would
    stage, ``sdkPipelineOptions``) with nothing uploaded, writes it to
    ``--dataflow_job_file`` and the portable pipeline the workers would run beside it
    (``<file>.pipeline.pb``, what the job's ``pipelineUrl`` names), says so on stderr and
    returns a finished result with no counters. No request leaves the machine: the
    description is made without credentials.
    """

    def run_pipeline(self, pipeline, options, pipeline_proto=None) -> DryRunResult:
        # The job's options name the runner the user asked for, as a submission's would.
        options.view_as(StandardOptions).runner = "DataflowRunner"
        super().run_pipeline(pipeline, options, pipeline_proto)  # dry run: builds self.job
        staged = _describe_offline(self.job)
        path = options.view_as(DebugOptions).dataflow_job_file
        where = ""
        if path:
            _write(path, self.job.json().encode())
            _write(pipeline_file(path), self.job.proto_pipeline.SerializeToString())
            where = f"; written to {path} and {pipeline_file(path)}"
        steps = len(self.job.proto_pipeline.components.transforms)
        print(f"ceap: dry run: Dataflow job {self.job.proto.name} built ({steps} transforms) "
              f"and not submitted{where}", file=sys.stderr, flush=True)  # fmt: skip
        return DryRunResult(self.job, staged)


def pipeline_file(job_file: str) -> str:
    """Where a dry run writes the portable pipeline of the job it writes to ``job_file``."""
    return os.path.splitext(job_file)[0] + ".pipeline.pb"


def _write(path: str, data: bytes) -> None:
    with FileSystems.create(path) as handle:
        handle.write(data)


def _describe_offline(job) -> dict[str, str]:
    """Fills in ``job.proto.environment`` as ``create_job_description`` does, uploading
    nothing; returns what a submission would stage, as {gs:// destination: local source}.

    The client is made with ``no_auth`` on a copy of the options (the job keeps the user's):
    it then asks for no credentials, and its API clients connect only when called."""
    import copy

    from apache_beam.runners.dataflow.internal import apiclient

    class OfflineClient(apiclient.DataflowApplicationClient):
        def _gcs_file_copy(self, from_path, to_path, sha256) -> None:  # artifacts
            staged[to_path] = from_path

        def stage_file_with_retry(self, gcs_or_local_path, file_name, stream_or_path,
                                  mime_type=None, total_size=None) -> None:  # fmt: skip
            staged[FileSystems.join(gcs_or_local_path, file_name)] = "(generated)"

    staged: dict[str, str] = {}
    auth_free = copy.deepcopy(job.options)
    auth_free.view_as(GoogleCloudOptions).no_auth = True
    OfflineClient(auth_free, job.root_staging_location).create_job_description(job)
    return staged


def __getattr__(name: str):
    # Built on first use: importing Dask (and Beam's Dask runner) costs ~1 s, and Dask is an
    # optional extra (``pip install .[dask]``).
    if name == "CeapDaskRunner":
        from pipelines.dask_runner import CeapDaskRunner

        globals()[name] = CeapDaskRunner
        return CeapDaskRunner
    raise AttributeError(name)
