"""``CeapDaskRunner``: the graph on a dask.distributed cluster, with fused stages.

Beam 2.77's own DaskRunner maps every ParDo to its own ``Bag.map_partitions``: each step's
whole output for a partition (a million-row source split) is a list held in a worker's
memory until every consumer has run, and what a worker holds at once grows with the number
of partitions in flight. Here, as on Beam's portable runners, a chain of ParDos is *fused*
into one task per partition (``pipelines/dask_stages.py``): elements flow from step to step
as they are produced, and a task keeps only what leaves its stage (what a GroupByKey,
Flatten or side input needs: for the batch graph, ranking's per-bucket accumulators, dead
letters and counters). A lifted combine's GroupByKey then merges those accumulators as a
sharded tree, so no worker gathers every bundle's accumulator or every key's result.

Kept from Beam's runner: its Create, Read, GroupByKey and Flatten translations and its
options (``--dask_client_address``, ``--dask_partition_size``...). Added: tagged outputs
reach only their consumers, every sink is computed, ``finish_bundle`` outputs are kept,
combiners are lifted and counters are reported by ``result.metrics()``.
"""

from __future__ import annotations

import contextlib
import dataclasses
import operator
import uuid
from collections import defaultdict

import dask
import dask.bag as db
import dask.distributed as ddist
from apache_beam import pvalue
from apache_beam.metrics.execution import MetricKey, MetricResult
from apache_beam.metrics.metric import MetricResults
from apache_beam.metrics.metricbase import MetricName
from apache_beam.runners.runner import PipelineState
from apache_beam.transforms.sideinputs import SideInputMap
from dask.base import tokenize
from dask.highlevelgraph import HighLevelGraph

from pipelines.beam_compat import (
    beam_dask,
    check_beam_version,
    combiner_lifting_overrides,
    lifted_combine_fn,
    translations,
)
from pipelines.dask_stages import Stage, Step, metrics, release, run_stage, select

SPLIT_EVERY = 2
"""Accumulators a combine's tree merges at once: fewer held per worker, more merge tasks."""
COMBINE_SHARDS = 8
"""Output partitions of a lifted combine: its keys spread over them, so what follows runs
in parallel and no worker holds every key's result."""


# -- a lifted combine's GroupByKey ----------------------------------------------------------


def _shard(key, shards: int) -> int:
    """A key's output partition, the same in every worker process (``hash`` of a str is
    salted per process; an int's is itself, so ranking's buckets 0..7 spread evenly)."""
    if isinstance(key, int):
        return key % shards
    return int(tokenize(key), 16) % shards


def _merge_into(out: dict, key, acc, combine_fn) -> None:
    out[key] = combine_fn.merge_accumulators([out[key], acc]) if key in out else acc


def _partial_shards(items, combine_fn, shards: int) -> list[dict]:
    """One partition's ``(key, accumulator)`` pairs, merged per key and split by shard."""
    out: list[dict] = [{} for _ in range(shards)]
    for key, value in items:
        _merge_into(out[_shard(key, shards)], key, translations.defenestrate(value), combine_fn)
    return out


def _merge_shards(parts: list[dict], combine_fn) -> dict:
    out: dict = {}
    for part in parts:
        for key, acc in part.items():
            _merge_into(out, key, acc, combine_fn)
    return out


def _grouped(merged: dict) -> list:
    return [(key, [acc]) for key, acc in merged.items()]


def _tree_combine(bag, combine_fn, shards: int = COMBINE_SHARDS):
    """A lifted combine's GroupByKey as a sharded tree reduction. Each partition's
    accumulators are merged per key and split into ``shards`` by key; each shard is then
    merged ``SPLIT_EVERY`` at a time up a tree, into one output partition per shard. A plain
    groupby gathers every bundle's accumulator of a key on one worker (TopN keeps up to
    top_n rows per group in each, so that grew with the input), and ``Bag.foldby`` ends in a
    single partition holding every key, so whatever follows the combine (ranking's emit and
    the store writes) would run as one task. Yields ``(key, [merged accumulator])``, which
    the combine's own finishing step merges (a no-op for one) and extracts."""
    name = f"ceap-combine-{uuid.uuid4().hex}"
    dsk: dict = {}
    for i in range(bag.npartitions):
        dsk[(f"{name}-partial", i)] = (_partial_shards, (bag.name, i), combine_fn, shards)
        for j in range(shards):
            dsk[(f"{name}-shard{j}", i)] = (operator.getitem, (f"{name}-partial", i), j)
    for j in range(shards):
        level, depth = [(f"{name}-shard{j}", i) for i in range(bag.npartitions)], 0
        while len(level) > 1:
            groups = [level[k : k + SPLIT_EVERY] for k in range(0, len(level), SPLIT_EVERY)]
            for k, group in enumerate(groups):
                dsk[(f"{name}-merge{depth}-{j}", k)] = (_merge_shards, group, combine_fn)
            level, depth = [(f"{name}-merge{depth}-{j}", k) for k in range(len(groups))], depth + 1
        dsk[(name, j)] = (_grouped, (_merge_shards, level, combine_fn))
    graph = HighLevelGraph.from_collections(name, dsk, dependencies=[bag])
    return db.Bag(graph, name, shards)


# -- translating the graph -------------------------------------------------------------------


def _is_pardo(node) -> bool:
    return translations.TRANSLATIONS.get(node.transform.__class__) is translations.ParDo


class _Translation(beam_dask.PipelineVisitor):
    """Visits the graph once to group ParDos into stages, then builds the Dask bags.

    A ParDo joins the stage that produces its main input; it starts a stage of its own when
    that input comes from anything else (Create, a GroupByKey, a Flatten) or when it reads
    side inputs (a side input computed in its own stage would make the task wait for itself).
    """

    def __init__(self, bag_kwargs: dict) -> None:
        self._bag_kwargs = bag_kwargs
        self._nodes: list = []
        self._stages: list[dict] = []  # {"root": PCollection, "steps": [...], "nodes": [...]}
        self._rooted: dict = {}  # PCollection -> the stage it is the root of
        self._produced: dict = {}  # PCollection -> (stage, step index, tag)
        self._read_outside: set = set()  # PCollections something outside a stage reads
        self._bags: dict = {}
        self.metric_bags: list = []
        self.stage_keys: list[str] = []

    def visit_transform(self, node) -> None:
        self._nodes.append(node)
        if not _is_pardo(node):
            self._read_outside.update(i for i in node.inputs if not isinstance(i, pvalue.PBegin))
            return
        main = next(iter(node.main_inputs.values()))
        self._read_outside.update(si.pvalue for si in node.side_inputs)
        if node.side_inputs:
            self._read_outside.add(main)
            stage, upstream = self._new_stage(main, shared=False), None
        elif main in self._produced:
            stage, index, tag = self._produced[main]
            upstream = (index, tag)
        else:
            stage, upstream = self._rooted.get(main) or self._new_stage(main), None
        index = len(stage["steps"])
        stage["steps"].append(self._step(node, main, reads_root=upstream is None))
        stage["nodes"].append(node)
        if upstream is not None:
            consumers, _ = stage["steps"][upstream[0]].outputs.setdefault(upstream[1], ([], None))
            consumers.append(index)
        for tag, out in node.outputs.items():
            self._produced[out] = (stage, index, tag)

    def _new_stage(self, root, shared: bool = True) -> dict:
        """A stage reading ``root``; ``shared``: later ParDos reading ``root`` join it."""
        stage = {"root": root, "steps": [], "nodes": [], "raw": None}
        self._stages.append(stage)
        if shared:
            self._rooted.setdefault(root, stage)
        return stage

    @staticmethod
    def _step(node, main, reads_root: bool) -> Step:
        args, kwargs = node.transform.raw_side_inputs
        window_fn = main.windowing.windowfn if hasattr(main, "windowing") else None
        return Step(node.full_label, node.transform.fn, list(args), kwargs, window_fn, reads_root)

    def build(self):
        """The bag whose computation runs every stage: the counters of every bundle."""
        for node in self._nodes:
            if not _is_pardo(node):
                self._apply(node)
        for stage in self._stages:  # sinks: stages nothing outside reads from
            self._stage_bag(stage)
        return db.concat(self.metric_bags) if self.metric_bags else db.from_sequence([])

    def _apply(self, node) -> None:
        inputs = [self._bag(i) for i in node.inputs if not isinstance(i, pvalue.PBegin)]
        op_class = translations.TRANSLATIONS.get(node.transform.__class__, translations.NoOp)
        combine_fn = lifted_combine_fn(node)
        if op_class is translations.GroupByKey and combine_fn is not None:
            bag = _tree_combine(inputs[0], combine_fn)
        elif op_class is translations.Flatten:
            bag = op_class(node, bag_kwargs=self._bag_kwargs).apply(inputs)
        else:
            op = op_class(node, bag_kwargs=self._bag_kwargs)
            bag = op.apply(inputs[0] if inputs else None)
        for out in node.outputs.values():
            self._bags[out] = bag

    def _bag(self, pcoll):
        if pcoll not in self._bags:
            stage, index, tag = self._produced[pcoll]
            raw = self._stage_bag(stage)
            self._bags[pcoll] = raw.map_partitions(select, f"{index}:{tag}")
        return self._bags[pcoll]

    def _stage_bag(self, stage: dict):
        if stage["raw"] is None:
            for index, (step, node) in enumerate(zip(stage["steps"], stage["nodes"], strict=True)):
                for tag, out in node.outputs.items():
                    consumers, _ = step.outputs.get(tag, ([], None))
                    leaves = f"{index}:{tag}" if out in self._read_outside else None
                    step.outputs[tag] = (consumers, leaves)
                step.side_inputs = [
                    SideInputMap(
                        type(si), si._view_options(),
                        translations.DaskBagWindowedIterator(self._bag(si.pvalue), si._window_mapping_fn),
                    )
                    for si in node.side_inputs
                ] or None  # fmt: skip
            root = self._bag(stage["root"])
            spec = Stage(stage["steps"])
            self.stage_keys.append(spec.key)
            stage["raw"] = root.map_partitions(run_stage, spec)
            self.metric_bags.append(stage["raw"].map_partitions(metrics))
        return stage["raw"]


# -- the runner and its result ---------------------------------------------------------------


class DaskMetrics(MetricResults):
    """Counters summed over every bundle (committed == attempted: a failed task fails the
    run, and Dask retries are not counted twice because results come from the futures that
    succeeded)."""

    def __init__(self, totals: dict) -> None:
        self._totals = totals

    def query(self, filter=None):
        found = []
        for (ns, name), value in sorted(self._totals.items()):
            key = MetricKey("", MetricName(ns, name))
            if self.matches(filter, key):
                found.append(MetricResult(key, value, value))
        return {
            self.COUNTERS: found, self.DISTRIBUTIONS: [], self.GAUGES: [],
            self.STRINGSETS: [], self.BOUNDED_TRIES: [], self.HISTOGRAMS: [],
        }  # fmt: skip


@dataclasses.dataclass
class DaskResult(beam_dask.DaskRunnerResult):
    stage_keys: list = dataclasses.field(default_factory=list)
    totals: dict = dataclasses.field(default_factory=lambda: defaultdict(int))

    def wait_until_finish(self, duration=None) -> str:
        if self._state == PipelineState.DONE:
            return self._state
        try:
            timeout = duration / 1000 if duration is not None else None
            for _, bundles in ddist.as_completed(self.futures, timeout, with_results=True):
                for bundle in bundles:
                    for key, n in bundle.items():
                        self.totals[key] += n
            self._state = PipelineState.DONE
        except BaseException:
            self._state = PipelineState.FAILED
            raise
        finally:
            with contextlib.suppress(Exception):  # a worker gone evicts its DoFns anyway
                self.client.run(release, self.stage_keys)
            self.client.close()  # else it keeps reconnecting once the cluster is gone
        return self._state

    def metrics(self):
        return DaskMetrics(dict(self.totals))


class CeapDaskRunner(beam_dask.DaskRunner):
    """Beam's DaskRunner with fused stages, tagged outputs, every sink computed,
    finish_bundle outputs kept, combiners lifted and counters reported."""

    def run_pipeline(self, pipeline, options):
        check_beam_version()
        dask_options = options.view_as(beam_dask.DaskOptions).get_all_options(
            drop_default=True, current_only=True
        )
        bag_kwargs = beam_dask.DaskOptions._extract_bag_kwargs(dask_options)
        if not bag_kwargs:
            # One partition per split: Beam's default (128 splits per partition) would make
            # a partition of 128M rows.
            bag_kwargs = {"partition_size": 1}
        client = ddist.Client(**dask_options)
        pipeline.replace_all(combiner_lifting_overrides(options) + beam_dask.dask_overrides())
        translation = _Translation(bag_kwargs)
        pipeline.visit(translation)
        everything = translation.build()
        futures = client.compute([dask.optimize(everything)[0]])
        return DaskResult(client, futures, stage_keys=translation.stage_keys)
