"""Every pipeline is portable: its graph survives Beam's Runner API round trip, each DoFn
and CombineFn in it survives Beam's pickler (what a remote worker receives), and
``setup.py`` builds the package ``--setup_file`` ships to workers."""

from __future__ import annotations

import shutil
import subprocess
import sys
import tarfile
from datetime import UTC, datetime
from pathlib import Path

import apache_beam as beam
import pytest
from apache_beam.internal import pickler
from apache_beam.options.pipeline_options import PipelineOptions
from apache_beam.pipeline import PipelineVisitor

from ceap.context import RunContext
from configs.schema import load_program, program_paths
from pipelines.batch import build_pipeline
from pipelines.streaming import build_streaming_pipeline

ROOT = Path(__file__).resolve().parents[2]
SEEDS = program_paths(ROOT / "configs")
NOW = datetime(2026, 11, 1, tzinfo=UTC)
STREAMING = [p for p in SEEDS if load_program(p).events is not None]


@pytest.fixture(autouse=True)
def sample_paths(tmp_path, monkeypatch):
    """Graph building lists source files: give the seed configs a small warehouse."""
    from sample import generate_warehouse

    generate_warehouse(tmp_path / "data" / "warehouse", rows=200, seed=1)
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("CEAP_HOME", str(tmp_path / "home"))


class _Functions(PipelineVisitor):
    """Collects what a runner serialises per leaf transform: a ParDo's DoFn with its
    arguments, a combine's CombineFn."""

    def __init__(self) -> None:
        self.found: list[tuple[str, object]] = []

    def visit_transform(self, node) -> None:
        t = node.transform
        if isinstance(t, beam.ParDo):
            self.found.append((node.full_label, (t.fn, t.args, t.kwargs)))

    def enter_composite_transform(self, node) -> None:
        t = node.transform
        if isinstance(t, beam.CombinePerKey | beam.CombineGlobally | beam.CombineValues):
            self.found.append((node.full_label, t.fn))


def assert_portable(pipeline: beam.Pipeline) -> None:
    proto = pipeline.to_runner_api()
    again = beam.Pipeline.from_runner_api(proto, pipeline.runner, PipelineOptions([]))
    names = {t.unique_name for t in proto.components.transforms.values()}
    assert {t.unique_name for t in again.to_runner_api().components.transforms.values()} == names

    functions = _Functions()
    pipeline.visit(functions)
    assert functions.found
    for label, fn in functions.found:
        try:
            restored = pickler.loads(pickler.dumps(fn))
        except Exception as exc:  # the label says which stage does not pickle
            raise AssertionError(f"{label}: {exc!r}") from exc
        assert type(restored) is type(fn), label


@pytest.mark.parametrize("path", SEEDS, ids=lambda p: p.stem)
def test_batch_graph_is_portable(path):
    program = load_program(path)
    ctx = RunContext(program=program.program, now=NOW)
    assert_portable(build_pipeline(program, ctx, PipelineOptions([])))


@pytest.mark.parametrize("path", STREAMING, ids=lambda p: p.stem)
def test_streaming_graph_is_portable(path, tmp_path):
    program = load_program(path)
    ctx = RunContext(
        program=program.program, now=NOW, store=f"sqlite:///{tmp_path}/ceap.db", streaming=True
    )
    assert_portable(build_streaming_pipeline(program, ctx, PipelineOptions([]), start=0))


def test_export_graph_is_portable(tmp_path):
    export = pytest.importorskip("pipelines.export")
    pipeline, _ = export.build_pipeline(
        "2026-11-01", str(tmp_path / "out"), f"sqlite:///{tmp_path}/ceap.db"
    )
    assert_portable(pipeline)


def test_setup_py_builds_the_sdist_that_setup_file_ships(tmp_path):
    """``--setup_file ./setup.py`` makes Beam run ``setup.py sdist`` and pip-install the
    result on every worker: build it from a copy (no build files land in the repo)."""
    src = tmp_path / "src"
    shutil.copytree(
        ROOT, src,
        ignore=shutil.ignore_patterns(".git", ".ceap", "data", "build", "*.egg-info",
                                      "__pycache__", "tests", "bench", "models"),
    )  # fmt: skip
    subprocess.run(
        [sys.executable, "setup.py", "-q", "sdist", "-d", str(tmp_path / "dist")],
        cwd=src, check=True, capture_output=True, timeout=120,
    )  # fmt: skip
    (sdist,) = (tmp_path / "dist").glob("ceap-*.tar.gz")
    with tarfile.open(sdist) as archive:
        names = {n.split("/", 1)[1] for n in archive.getnames() if "/" in n}
    for package in ("ceap", "pipelines", "transforms", "connectors", "scorers", "channels",
                    "configs", "stores", "serving"):  # fmt: skip
        assert f"{package}/__init__.py" in names, package
    assert {"run.py", "setup.py", "pipelines/runners.py", "configs/reviews.yaml"} <= names
