"""Fused stages for ``CeapDaskRunner`` (``pipelines/dask_runner.py``): a chain of ParDos
runs inside one Dask task per partition, element by element, as Beam's portable runners run
a fused stage; each DoFn is set up once per worker thread and reused across bundles.

A task returns ``(output id, value)`` for what leaves its stage (what a GroupByKey, Flatten
or side input reads), then one ``(METRICS, {(namespace, name): count})``.
"""

from __future__ import annotations

import collections
import contextlib
import dataclasses
import threading
import uuid
from collections import defaultdict
from typing import Any

from apache_beam import DoFn
from apache_beam.metrics.execution import MetricsContainer

from pipelines.beam_compat import (
    DoFnContext,
    DoFnInvoker,
    DoFnSignature,
    OutputHandler,
    Receiver,
    counters,
    statesampler,
    translations,
)

METRICS = "__ceap_metrics__"


# -- a fused stage: ParDos run element by element inside one task per partition -------------


@dataclasses.dataclass
class Step:
    """One ParDo of a stage. ``outputs`` maps an output tag to the indices of the steps
    that consume it and, when something outside the stage reads it, the id it leaves under."""

    label: str
    fn: DoFn
    args: list
    kwargs: dict
    window_fn: Any
    reads_root: bool
    side_inputs: list | None = None
    outputs: dict = dataclasses.field(default_factory=dict)


class Stage:
    """The steps of a stage in topological order, and the key its set-up DoFns are kept
    under on a worker. A plain class, not a container or a dataclass: Dask passes it to the
    task as it is instead of looking inside for keys."""

    def __init__(self, steps: list[Step]) -> None:
        self.steps = steps
        self.key = uuid.uuid4().hex


class _Emit(Receiver):
    """Hands a step's output to its consumers in the stage, and keeps it when it leaves."""

    def __init__(self, consumers: list, kept: list | None, out_id: str | None) -> None:
        self._consumers, self._kept, self._id = consumers, kept, out_id

    def receive(self, windowed_value) -> None:
        for consumer in self._consumers:
            consumer.process(windowed_value)
        if self._id is not None:
            self._kept.append((self._id, windowed_value.value))


class _Receivers(dict):
    """Tagged receivers; an undeclared tag's outputs are dropped, as on Beam's runners."""

    def __missing__(self, tag):
        return _Emit([], None, None)


class _StepRunner:
    """One step's DoFn, set up once and reused for every bundle of its stage on a worker."""

    def __init__(self, step: Step) -> None:
        self.step = step
        self.invoker = None
        self.container = self.state = None

    def wire(self, runners: list[_StepRunner], kept: list) -> None:
        step = self.step
        receivers = _Receivers()
        for tag, (consumers, out_id) in step.outputs.items():
            receivers[tag] = _Emit([runners[i] for i in consumers], kept, out_id)
        handler = OutputHandler(
            window_fn=step.window_fn, main_receivers=receivers[None], tagged_receivers=receivers,
            per_element_output_counter=None, output_batch_converter=None,
            process_yields_batches=False, process_batch_yields_elements=False,
        )  # fmt: skip
        self.invoker = DoFnInvoker.create_invoker(
            DoFnSignature(step.fn), handler, context=DoFnContext(step.label, state=None),
            side_inputs=step.side_inputs, input_args=step.args, input_kwargs=step.kwargs,
            user_state_context=None, bundle_finalizer_param=DoFn.BundleFinalizerParam(),
        )  # fmt: skip

    def process(self, windowed_value) -> None:
        with self.state:
            self.invoker.invoke_process(windowed_value)

    def start(self, sampler) -> None:
        """A bundle begins: fresh counters, counted while this step's code runs."""
        self.container = MetricsContainer(self.step.label)
        self.state = sampler.scoped_state(
            self.step.label, "process", metrics_container=self.container
        )
        with self.state:
            self.invoker.invoke_start_bundle()

    def finish(self) -> None:
        with self.state:
            self.invoker.invoke_finish_bundle()  # its outputs flow on (lifted combiners)


class _Runners:
    """A stage's steps, wired and set up; what one bundle keeps collects in ``kept``."""

    def __init__(self, stage: Stage) -> None:
        self.kept: list = []
        self.steps = [_StepRunner(step) for step in stage.steps]
        for runner in self.steps:
            runner.wire(self.steps, self.kept)
        self.roots = [r for r in self.steps if r.step.reads_root]
        for runner in self.steps:
            runner.invoker.invoke_setup()

    def teardown(self) -> None:
        for runner in self.steps:
            with contextlib.suppress(Exception):  # best effort, as on Beam's runners
                runner.invoker.invoke_teardown()


# Set-up DoFns idle on this worker, by stage key. Beam's runners reuse a DoFn instance across
# bundles; setting one up per task instead reloaded every lookup table and model per split
# (and churned the worker's memory). A run releases its stages when it ends (_release); the
# bound evicts the oldest if a client went away before it could.
_IDLE: collections.OrderedDict[str, list[_Runners]] = collections.OrderedDict()
_IDLE_LOCK = threading.Lock()
_IDLE_STAGES = 64


def _checkout(stage: Stage) -> _Runners:
    with _IDLE_LOCK:
        idle = _IDLE.get(stage.key)
        if idle:
            return idle.pop()
    return _Runners(stage)


def _checkin(key: str, runners: _Runners) -> None:
    evicted = []
    with _IDLE_LOCK:
        _IDLE.setdefault(key, []).append(runners)
        _IDLE.move_to_end(key)
        while len(_IDLE) > _IDLE_STAGES:
            evicted += _IDLE.popitem(last=False)[1]
    for old in evicted:
        old.teardown()


def release(keys: list[str]) -> int:
    """Tears down the idle DoFns of ``keys`` (a run's stages) on this worker."""
    with _IDLE_LOCK:
        released = [r for key in keys for r in _IDLE.pop(key, [])]
    for runners in released:
        runners.teardown()
    return len(released)


def run_stage(items, stage: Stage) -> list:
    """Runs a stage over one Dask partition (a Beam bundle): returns ``(output id, value)``
    for what leaves the stage, then one ``(METRICS, {(namespace, name): count})``."""
    runners = _checkout(stage)
    sampler = statesampler.StateSampler("", counters.CounterFactory())
    statesampler.set_current_tracker(sampler)
    try:
        for runner in runners.steps:
            runner.start(sampler)
        for item in items:
            for root in runners.roots:
                root.process(translations.get_windowed_value(item, root.step.window_fn))
        for runner in runners.steps:  # upstream first: what a step emits at finish flows on
            runner.finish()
    except BaseException:
        runners.teardown()  # its DoFns' state is unknown: not reused
        raise
    finally:
        statesampler.set_current_tracker(None)
    out = list(runners.kept)
    runners.kept.clear()
    counts: dict = defaultdict(int)
    for runner in runners.steps:
        for key, n in runner.container.get_cumulative().counters.items():
            counts[(key.metric.namespace, key.metric.name)] += n
    _checkin(stage.key, runners)
    out.append((METRICS, dict(counts)))
    return out


def select(pairs, out_id):
    return [v for t, v in pairs if t == out_id]


def metrics(pairs):
    return [v for t, v in pairs if t == METRICS]
