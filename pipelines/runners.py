"""Runner-specific helpers: options checked before submit, and the DaskRunner made whole.

``validate_runner_options`` fails fast, with a ``ConfigError`` naming the flag to add,
where Beam would otherwise fail minutes later on a remote service (or silently write to a
SQLite file on one worker's disk).

``normalize_beam_args`` swaps Beam's ``DaskRunner`` for ``CeapDaskRunner``. Beam 2.77's
DaskRunner only runs linear graphs: it feeds every output of a multi-output ParDo to every
consumer (our stages have tagged outputs), computes only the last transform it visited
(the other sinks never run), drops what ``finish_bundle`` emits, does not lift combiners
(one key's values end up in one list) and reports no metrics. ``CeapDaskRunner`` keeps
Beam's Dask translations (Create, GroupByKey, Flatten) and replaces the ParDo one.
"""

from __future__ import annotations

import ipaddress
import urllib.parse
from collections import defaultdict

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


def validate_runner_options(options: PipelineOptions, store: str | None = None) -> None:
    """Raises ``ConfigError`` listing every problem found in the runner's options.

    Args:
      options: the run's pipeline options (Beam's and CEAP's flags).
      store: the store spec the run writes to (``RunContext.store``); default ``--store``.
    """
    name = runner_name(options)
    problems: list[str] = []
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
    if store.startswith("sqlite") and _distributed(options, name):
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


# -- the DaskRunner ------------------------------------------------------------------------

_METRICS = "__ceap_metrics__"


def _run_bundle(items, label, fn, args, kwargs, side_inputs, window_fn):
    """Runs a DoFn over one Dask partition (a Beam bundle) under a metrics container;
    returns ``(output tag, value)`` pairs, then one ``(_METRICS, {(ns, name): n})``."""
    from apache_beam import DoFn
    from apache_beam.metrics.execution import MetricsContainer
    from apache_beam.runners.common import DoFnContext, DoFnInvoker, DoFnSignature, _OutputHandler
    from apache_beam.runners.dask.transform_evaluator import OneReceiver, get_windowed_value
    from apache_beam.runners.worker import statesampler
    from apache_beam.utils import counters

    receivers = OneReceiver()
    handler = _OutputHandler(
        window_fn=window_fn, main_receivers=receivers[None], tagged_receivers=receivers,
        per_element_output_counter=None, output_batch_converter=None,
        process_yields_batches=False, process_batch_yields_elements=False,
    )  # fmt: skip
    invoker = DoFnInvoker.create_invoker(
        DoFnSignature(fn), handler, context=DoFnContext(label, state=None),
        side_inputs=side_inputs, input_args=args, input_kwargs=kwargs,
        user_state_context=None, bundle_finalizer_param=DoFn.BundleFinalizerParam(),
    )  # fmt: skip
    container = MetricsContainer(label)
    sampler = statesampler.StateSampler("", counters.CounterFactory())
    statesampler.set_current_tracker(sampler)
    try:
        with sampler.scoped_state(label, "process", metrics_container=container):
            invoker.invoke_setup()
            invoker.invoke_start_bundle()
            for item in items:
                invoker.invoke_process(get_windowed_value(item, window_fn))
            invoker.invoke_finish_bundle()  # its outputs count too (lifted combiners)
            invoker.invoke_teardown()
    finally:
        statesampler.set_current_tracker(None)
    out = []
    for v in receivers.values:  # WindowedValue (main) or TaggedOutput(tag, WindowedValue)
        tag, wv = (v.tag, v.value) if hasattr(v, "tag") else (None, v)
        out.append((tag, wv.value))
    counts = {
        (k.metric.namespace, k.metric.name): v
        for k, v in container.get_cumulative().counters.items()
    }
    out.append((_METRICS, counts))
    return out


def _lifted_combine_fn(node):
    """The CombineFn when ``node`` is the GroupByKey of a lifted CombinePerKey, else None."""
    from apache_beam.transforms.combiners import LiftedCombinePerKey

    parent = node.parent
    while parent is not None and parent.transform is not None:
        if isinstance(parent.transform, LiftedCombinePerKey):
            return parent.transform._combine_fn
        parent = parent.parent
    return None


def _tree_combine(bag, combine_fn):
    """A lifted combine's GroupByKey as a tree reduction (``Bag.foldby``): accumulators are
    merged per partition, then pairwise, so a worker holds a few of them at a time. A plain
    groupby gathers every partition's accumulator of a key on one worker first: with one
    accumulator per bundle (TopN keeps up to top_n rows each) that grows with the input.
    Yields ``(key, [merged accumulator])``, which the combine's own finishing step merges
    (a no-op for one) and extracts, as after a GroupByKey."""
    from apache_beam.runners.dask.transform_evaluator import defenestrate

    empty = object()

    def merge(a, b):
        if a is empty:
            return b
        if b is empty:
            return a
        return combine_fn.merge_accumulators([a, b])

    def add(acc, item):
        return merge(acc, defenestrate(item[1]))

    folded = bag.foldby(lambda item: item[0], add, empty, merge, empty)
    return folded.map(lambda kv: (kv[0], [kv[1]]))


def _select(pairs, tag):
    return [v for t, v in pairs if t == tag]


def _metrics(pairs):
    return [v for t, v in pairs if t == _METRICS]


def _make_runner():
    import dataclasses

    from apache_beam.metrics.execution import MetricKey, MetricResult
    from apache_beam.metrics.metric import MetricResults
    from apache_beam.metrics.metricbase import MetricName
    from apache_beam.runners.dask import dask_runner as beam_dask
    from apache_beam.runners.dask import transform_evaluator as te

    class DaskMetrics(MetricResults):
        """Counters summed over every bundle (committed == attempted: a failed task fails
        the run, Dask retries are not counted twice because results come from the
        futures that succeeded)."""

        def __init__(self, totals: dict) -> None:
            self._totals = totals

        def query(self, filter=None):
            counters = []
            for (ns, name), value in sorted(self._totals.items()):
                key = MetricKey("", MetricName(ns, name))
                if self.matches(filter, key):
                    counters.append(MetricResult(key, value, value))
            return {
                self.COUNTERS: counters, self.DISTRIBUTIONS: [], self.GAUGES: [],
                self.STRINGSETS: [], self.BOUNDED_TRIES: [], self.HISTOGRAMS: [],
            }  # fmt: skip

    @dataclasses.dataclass
    class Result(beam_dask.DaskRunnerResult):
        totals: dict = dataclasses.field(default_factory=lambda: defaultdict(int))

        def wait_until_finish(self, duration=None) -> str:
            import dask.distributed as ddist
            from apache_beam.runners.runner import PipelineState

            if self._state == PipelineState.DONE:
                return self._state
            try:
                timeout = duration / 1000 if duration is not None else None
                for _, counts in ddist.as_completed(self.futures, timeout, with_results=True):
                    for bundle in counts:
                        for key, n in bundle.items():
                            self.totals[key] += n
                self._state = PipelineState.DONE
            except BaseException:
                self._state = PipelineState.FAILED
                raise
            finally:
                self.client.close()  # else it keeps reconnecting once the cluster is gone
            return self._state

        def metrics(self):
            return DaskMetrics(dict(self.totals))

    class CeapDaskRunner(beam_dask.DaskRunner):
        """Beam's DaskRunner with multi-output ParDos, every sink computed, finish_bundle
        outputs kept, combiners lifted and counters reported."""

        def run_pipeline(self, pipeline, options):
            import dask
            import dask.bag as db
            import dask.distributed as ddist
            from apache_beam import pvalue
            from apache_beam.runners.direct.direct_runner import _get_transform_overrides
            from apache_beam.transforms.sideinputs import SideInputMap

            dask_options = options.view_as(beam_dask.DaskOptions).get_all_options(
                drop_default=True, current_only=True
            )
            bag_kwargs = beam_dask.DaskOptions._extract_bag_kwargs(dask_options)
            if not bag_kwargs:
                # One partition per split: a partition is held in memory as a list, so
                # Beam's default (128 splits each) would hold 128M rows on one worker.
                bag_kwargs = {"partition_size": 1}
            client = ddist.Client(**dask_options)
            lift = [o for o in _get_transform_overrides(options) if "Combine" in type(o).__name__]
            pipeline.replace_all(lift + beam_dask.dask_overrides())

            bags: dict = {}  # PCollection -> Bag
            metric_bags: list = []

            class Visitor(beam_dask.PipelineVisitor):
                def visit_transform(self, node) -> None:
                    inputs = [bags[i] for i in node.inputs if not isinstance(i, pvalue.PBegin)]
                    op_class = te.TRANSLATIONS.get(node.transform.__class__, te.NoOp)
                    if op_class is te.ParDo:
                        raw = self._pardo(node, inputs[0])
                        metric_bags.append(raw.map_partitions(_metrics))
                        for out in node.outputs.values():
                            bags[out] = raw.map_partitions(_select, out.tag)
                        return
                    combine_fn = _lifted_combine_fn(node)
                    if op_class is te.GroupByKey and combine_fn is not None:
                        bag = _tree_combine(inputs[0], combine_fn)
                        for out in node.outputs.values():
                            bags[out] = bag
                        return
                    op = op_class(node, bag_kwargs=bag_kwargs)
                    if op_class is te.Flatten:
                        bag = op.apply(inputs)
                    else:
                        bag = op.apply(inputs[0] if inputs else None)
                    for out in node.outputs.values():
                        bags[out] = bag

                def _pardo(self, node, bag):
                    transform = node.transform
                    args, kwargs = transform.raw_side_inputs
                    main = next(iter(node.main_inputs.values()))
                    window_fn = main.windowing.windowfn if hasattr(main, "windowing") else None
                    sides = [
                        SideInputMap(
                            type(si), si._view_options(),
                            te.DaskBagWindowedIterator(bags[si.pvalue], si._window_mapping_fn),
                        )
                        for si in node.side_inputs
                    ]  # fmt: skip
                    return bag.map_partitions(
                        _run_bundle, node.full_label, transform.fn, list(args), kwargs,
                        sides or None, window_fn,
                    )  # fmt: skip

            pipeline.visit(Visitor())
            everything = db.concat(metric_bags) if metric_bags else db.from_sequence([])
            futures = client.compute([dask.optimize(everything)[0]])
            return Result(client, futures)

    return CeapDaskRunner


def __getattr__(name: str):
    # Built on first use: importing Dask (and Beam's Dask runner) costs ~1 s, and Dask is an
    # optional extra (``pip install .[dask]``).
    if name == "CeapDaskRunner":
        runner = _make_runner()
        globals()[name] = runner
        return runner
    raise AttributeError(name)
