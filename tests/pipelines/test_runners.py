"""Runner options are checked before submit: each mistake is named with the flag to add."""

from __future__ import annotations

import pytest
from apache_beam.options.pipeline_options import PipelineOptions

from ceap.errors import ConfigError
from pipelines.runners import DASK_RUNNER, normalize_beam_args, validate_runner_options

DATAFLOW = [
    "--runner=DataflowRunner", "--project=p", "--region=europe-west1",
    "--temp_location=gs://b/tmp", "--setup_file=./setup.py", "--store=dynamodb://ceap",
]  # fmt: skip


def check(*args: str, streaming: bool = False) -> None:
    validate_runner_options(PipelineOptions(list(args)), streaming=streaming)


def fails(*args: str, streaming: bool = False) -> str:
    with pytest.raises(ConfigError) as err:
        check(*args, streaming=streaming)
    return str(err.value)


def test_local_runners_need_nothing():
    check()
    check("--direct_running_mode=multi_processing", "--direct_num_workers=2")
    check(f"--runner={DASK_RUNNER}", "--dask_client_address=tcp://127.0.0.1:8786")


def test_a_complete_dataflow_submission_passes():
    check(*DATAFLOW)
    check(*DATAFLOW, "--streaming", "--experiments=use_runner_v2")


@pytest.mark.parametrize("flag", ["--project", "--region", "--temp_location"])
def test_dataflow_without_a_required_flag(flag):
    args = [a for a in DATAFLOW if not a.startswith(flag + "=")]
    assert f"DataflowRunner needs {flag}" in fails(*args)


def test_dataflow_temp_location_must_be_on_gcs():
    message = fails(*DATAFLOW[:3], "--temp_location=/tmp/x", *DATAFLOW[4:])
    assert "--temp_location must be a gs:// path" in message


def test_dataflow_workers_need_ceap_installed():
    args = [a for a in DATAFLOW if not a.startswith("--setup_file")]
    assert "--setup_file ./setup.py" in fails(*args)
    check(*args, "--sdk_container_image=europe-docker.pkg.dev/p/ceap/worker:1")


def test_dataflow_runner_v1_is_refused():
    assert "Runner v2" in fails(*DATAFLOW, "--experiments=disable_runner_v2")


def test_flink_needs_its_master_and_an_environment():
    assert "--flink_master host:8081" in fails("--runner=FlinkRunner", "--store=dynamodb://c",
                                               "--environment_type=LOOPBACK")  # fmt: skip
    assert "--environment_type" in fails(
        "--runner=FlinkRunner", "--flink_master=flink:8081", "--store=dynamodb://c"
    )
    check("--runner=FlinkRunner", "--flink_master=flink:8081", "--environment_type=LOOPBACK",
          "--store=dynamodb://c")  # fmt: skip


@pytest.mark.parametrize("store", ["sqlite", "sqlite:///tmp/ceap.db"])
def test_the_embedded_store_is_refused_on_a_distributed_runner(store):
    message = fails(*DATAFLOW[:-1], f"--store={store}")
    assert "use --store dynamodb://" in message
    message = fails(
        f"--runner={DASK_RUNNER}", "--dask_client_address=tcp://10.0.0.5:8786", f"--store={store}"
    )
    assert "use --store dynamodb://" in message


def test_every_problem_is_reported_at_once():
    message = fails("--runner=DataflowRunner")
    for flag in ("--project", "--region", "--temp_location", "--setup_file", "dynamodb://"):
        assert flag in message


def test_beams_dask_runner_is_swapped_for_ours():
    beam_dask = "apache_beam.runners.dask.dask_runner.DaskRunner"
    assert normalize_beam_args([f"--runner={beam_dask}", "--x=1"]) == [
        f"--runner={DASK_RUNNER}", "--x=1",
    ]  # fmt: skip
    assert normalize_beam_args(["--runner", "DaskRunner"]) == ["--runner", DASK_RUNNER]
    assert normalize_beam_args(["--runner=DataflowRunner"]) == ["--runner=DataflowRunner"]


def test_streaming_on_dask_is_refused_before_anything_runs(tmp_path, monkeypatch):
    """Every entry point checks its flags: batch, streaming (here, through ``run.py``) and
    export. Dask has no unbounded sources, and Beam alone would fail with "Unexpected
    pipeline runner: DaskRunner"."""
    import run as cli

    monkeypatch.setenv("CEAP_HOME", str(tmp_path))
    code = cli.main([
        "--program", "reviews", "--mode", "streaming",
        "--runner", "DaskRunner", "--dask_client_address=tcp://127.0.0.1:1",
    ])  # fmt: skip
    assert code == 1
    assert "batch graphs only" in fails(f"--runner={DASK_RUNNER}", streaming=True)
    check(f"--runner={DASK_RUNNER}")  # batch is fine


def test_export_checks_its_runner_flags_before_reading_anything(tmp_path):
    from pipelines.export import run_export

    with pytest.raises(ConfigError, match="--temp_location"):
        run_export("2026-11-01", str(tmp_path / "out"), "sqlite", ["--runner=DataflowRunner"])
    assert not (tmp_path / "out").exists()


@pytest.mark.parametrize("given", ["dataflow", "DATAFLOW", "dataflowrunner", "Dataflow"])
def test_a_runner_named_as_beam_accepts_it_is_checked_too(given):
    """Beam resolves a short name in any case, with or without ``Runner``: so do the
    checks (``--runner dataflow`` skipped them all, then waited ~100 s on GCS), and their
    message names the runner the user asked for."""
    message = fails(f"--runner={given}", "--project=p", "--region=r")
    assert message.startswith("DataflowRunner options:") and "--temp_location" in message
    dry = normalize_beam_args(["--runner", given, "--dry_run=True"])
    assert dry == ["--runner", "pipelines.runners.DataflowDryRunner", "--dry_run=True"]
    assert normalize_beam_args(["--runner=dask"]) == [f"--runner={DASK_RUNNER}"]


def test_a_dry_run_names_the_runner_typed_not_its_stand_in():
    args = normalize_beam_args(["--runner=DataflowRunner", "--dry_run=True", "--project=p"])
    message = fails(*args, "--region=r")
    assert message.startswith("DataflowRunner options:") and "DataflowDryRunner" not in message
    message = fails(f"--runner={DASK_RUNNER}", "--dask_client_address=tcp://10.0.0.5:8786")
    assert (
        message.startswith("DaskRunner options:") and "DaskRunner workers run elsewhere" in message
    )


@pytest.mark.parametrize(
    ("content", "refused"),
    [('{"address": "tcp://10.1.2.3:8786"}', True), ('{"address": "tcp://127.0.0.1:8786"}', False),
     ("not json", True), (None, True)],
)  # fmt: skip
def test_a_dask_scheduler_file_is_checked_like_an_address(tmp_path, content, refused):
    """``--dask_scheduler_file`` names the scheduler instead of ``--dask_client_address``:
    a remote one, or a file that cannot be read, refuses the local SQLite store."""
    path = tmp_path / "scheduler.json"
    if content is not None:
        path.write_text(content)
    args = [f"--runner={DASK_RUNNER}", f"--dask_scheduler_file={path}", "--store=sqlite"]
    if refused:
        message = fails(*args)
        assert "use --store dynamodb://" in message and "tcp://127.0.0.1:PORT" in message
        assert ("has no address to read" in message) == (
            content != '{"address": "tcp://10.1.2.3:8786"}'
        )
    else:
        check(*args)


def test_a_dataflow_export_to_this_machine_is_refused(tmp_path):
    """Its workers would write (and commit) into their own disks: refused like a local
    --temp_location, before anything is built."""
    from pipelines.export import run_export

    with pytest.raises(ConfigError, match="Dataflow workers write to gs://"):
        run_export("2026-11-01", str(tmp_path / "out"), "dynamodb://ceap", DATAFLOW[:-1])
    assert not (tmp_path / "out").exists()


@pytest.mark.parametrize(
    ("args", "where"),
    [([], "shared"), ([f"--runner={DASK_RUNNER}", "--dask_client_address=127.0.0.1:8786"], "shared"),
     ([f"--runner={DASK_RUNNER}", "--dask_client_address=tcp://10.0.0.5:8786"], "elsewhere"),
     (["--runner=FlinkRunner", "--flink_master=f:8081", "--environment_type=LOOPBACK"], "shared"),
     (["--runner=FlinkRunner", "--flink_master=f:8081", "--environment_type=DOCKER"], "elsewhere"),
     (DATAFLOW, "dataflow")],
)  # fmt: skip
def test_where_the_workers_are_decides_how_a_programs_files_are_named(args, where):
    from pipelines.runners import worker_disk

    assert worker_disk(args) == (where, False)
    assert worker_disk([*args, "--sdk_container_image=img"])[1] is True
