"""CeapDaskRunner's fused stages: a chain of ParDos runs inside one task per partition,
elements flowing step to step as they are produced (a step's whole output is never held as
a list), each DoFn is set up once per worker and reused across bundles, and a run tears its
DoFns down when it ends. Runs on a LocalCluster of two worker processes."""

from __future__ import annotations

import os
from pathlib import Path

import apache_beam as beam
import pytest
from apache_beam.metrics import Metrics
from apache_beam.metrics.metric import MetricsFilter
from apache_beam.options.pipeline_options import PipelineOptions

pytest.importorskip("dask.distributed")

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def scheduler() -> str:
    from dask.distributed import LocalCluster

    with LocalCluster(
        processes=True, n_workers=2, threads_per_worker=1, dashboard_address=None
    ) as cluster:
        yield cluster.scheduler_address


def pipeline(scheduler: str) -> beam.Pipeline:
    from pipelines.runners import CeapDaskRunner

    options = PipelineOptions([f"--dask_client_address={scheduler}"])
    return beam.Pipeline(runner=CeapDaskRunner(), options=options)


def counters(result) -> dict[str, int]:
    found = result.metrics().query(MetricsFilter().with_namespace("test"))["counters"]
    return {c.key.metric.name: c.committed for c in found}


def note(path: str, line: str) -> None:
    with open(path, "a") as f:
        f.write(line + "\n")


class Lifecycle(beam.DoFn):
    """Notes its setup and teardown (with the worker's pid) and counts what it sees."""

    def __init__(self, path: str) -> None:
        self._path = path

    def setup(self) -> None:
        note(self._path, f"setup {os.getpid()}")

    def process(self, x):
        Metrics.counter("test", "seen").inc()
        yield x

    def teardown(self) -> None:
        note(self._path, f"teardown {os.getpid()}")


def test_a_dofn_is_set_up_once_per_worker_and_torn_down_when_the_run_ends(scheduler, tmp_path):
    log = str(tmp_path / "lifecycle")
    p = pipeline(scheduler)
    _ = (
        p
        | beam.Create(list(range(40)))  # one partition per element: 40 bundles
        | "Lifecycle" >> beam.ParDo(Lifecycle(log))
        | "Count" >> beam.Map(lambda x: Metrics.counter("test", "after").inc())
    )
    result = p.run()
    result.wait_until_finish()
    assert counters(result) == {"seen": 40, "after": 40}
    lines = Path(log).read_text().splitlines()
    setups = [line for line in lines if line.startswith("setup")]
    assert 1 <= len(setups) <= 2  # one per worker process (one thread each), not 40
    assert sorted(line.replace("teardown", "setup") for line in lines if "teardown" in line) == (
        sorted(setups)
    )


class Expand(beam.DoFn):
    def __init__(self, path: str) -> None:
        self._path = path

    def process(self, x):
        for i in range(4):
            note(self._path, f"expand {x}:{i}")
            yield (x, i)


class Consume(beam.DoFn):
    def __init__(self, path: str) -> None:
        self._path = path

    def process(self, pair):
        note(self._path, f"consume {pair[0]}:{pair[1]}")
        yield pair


def test_elements_flow_through_a_stage_as_they_are_produced(scheduler, tmp_path):
    """Beam's own DaskRunner runs each ParDo over a whole partition and holds its output as a
    list: every "expand" line would come before the first "consume" line."""
    log = str(tmp_path / "order")
    p = pipeline(scheduler)
    _ = p | beam.Create(["a"]) | beam.ParDo(Expand(log)) | beam.ParDo(Consume(log))
    p.run().wait_until_finish()
    lines = Path(log).read_text().splitlines()
    assert lines == [f"{verb} a:{i}" for i in range(4) for verb in ("expand", "consume")]


class AddTotal(beam.DoFn):
    def process(self, x, side):
        Metrics.counter("test", "sum").inc(x + sum(side))
        yield x


def test_side_inputs_from_the_same_source_and_tagged_outputs(scheduler):
    """A ParDo reading a side input computed from its own main input's stage (the stage must
    not wait for itself), and a multi-output ParDo whose outputs reach only their consumers."""

    def split(x):
        yield beam.pvalue.TaggedOutput("odd" if x % 2 else "even", x)

    p = pipeline(scheduler)
    numbers = p | beam.Create(list(range(10))) | "Id" >> beam.Map(lambda x: x)
    doubled = numbers | "Double" >> beam.Map(lambda x: 2 * x)  # sum 90
    _ = numbers | "AddTotal" >> beam.ParDo(AddTotal(), beam.pvalue.AsList(doubled))
    parts = numbers | "Split" >> beam.FlatMap(split).with_outputs("odd", "even")
    _ = parts.odd | "Odd" >> beam.Map(lambda x: Metrics.counter("test", "odd").inc(x))
    _ = parts.even | "Even" >> beam.Map(lambda x: Metrics.counter("test", "even").inc(x))
    result = p.run()
    result.wait_until_finish()
    assert counters(result) == {"sum": 45 + 10 * 90, "odd": 25, "even": 20}


class Explode(beam.DoFn):
    def process(self, x):
        if x == 7:
            raise ValueError("bad element 7")
        yield x


def test_a_failing_dofn_fails_the_run_with_its_error(scheduler):
    p = pipeline(scheduler)
    _ = p | beam.Create(list(range(10))) | beam.ParDo(Explode())
    with pytest.raises(Exception, match="bad element 7"):
        p.run().wait_until_finish()


def test_export_on_dask_writes_the_same_parts_and_reports_them_on_the_driver(
    scheduler, tmp_path, capsys
):
    """On a distributed runner the workers' prints stay in their logs: the part lines the
    user sees come from the driver, and the files match an in-process export."""
    from pipelines.export import run_export
    from tests.pipelines.test_export import DAY, counts, seeded_store

    spec = seeded_store(tmp_path)
    local = run_export(DAY, str(tmp_path / "local"), spec)
    capsys.readouterr()
    on_dask = run_export(
        DAY, str(tmp_path / "dask"), spec,
        ["--runner=DaskRunner", f"--dask_client_address={scheduler}"],
    )  # fmt: skip
    printed = capsys.readouterr().out
    assert on_dask == local == {"candidates": 5, "outbox": 4, "responses": 2, "events": 0}
    for table in ("candidates", "outbox", "responses"):
        assert counts(tmp_path / "dask", table) == counts(tmp_path / "local", table)
    assert f"{tmp_path}/dask/candidates/dt={DAY}/program=reviews/part-00000.parquet" in printed
    assert printed.index("candidates") < printed.index("outbox") < printed.index("responses")
