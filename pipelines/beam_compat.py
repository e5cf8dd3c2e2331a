"""Every Apache Beam internal CEAP's Dask runner relies on, in one place, with the Beam
range it was written and tested against.

CeapDaskRunner (pipelines/dask_runner.py, pipelines/dask_stages.py) fuses ParDos into one
Dask task per split, lifts combines and reports counters: that needs Beam's Dask translation
(``runners.dask``), its DoFn invocation machinery (``runners.common``), the state sampler
and the direct runner's combiner-lifting overrides, none of which is public API. A Beam
upgrade is this file, ``SUPPORTED_BEAM`` and the runner-equivalence test
(tests/pipelines/test_runner_equivalence.py), nothing else.
"""

from __future__ import annotations

import apache_beam
from apache_beam.runners.common import DoFnContext, DoFnInvoker, DoFnSignature, Receiver
from apache_beam.runners.common import _OutputHandler as OutputHandler
from apache_beam.runners.dask import dask_runner as beam_dask
from apache_beam.runners.dask import transform_evaluator as translations
from apache_beam.runners.direct.direct_runner import _get_transform_overrides
from apache_beam.runners.worker import statesampler
from apache_beam.transforms.combiners import LiftedCombinePerKey
from apache_beam.utils import counters

from ceap.errors import ConfigError

SUPPORTED_BEAM = ((2, 77), (2, 78))
"""[low, high): the Beam versions these internals are known to match (setup.py pins the same)."""

__all__ = [
    "DoFnContext", "DoFnInvoker", "DoFnSignature", "OutputHandler", "Receiver", "beam_dask",
    "check_beam_version", "combiner_lifting_overrides", "counters", "lifted_combine_fn",
    "statesampler", "translations",
]  # fmt: skip


def check_beam_version(version: str = apache_beam.__version__) -> None:
    """Refuses a Beam outside ``SUPPORTED_BEAM``, naming both: its internals may differ."""
    found = tuple(int(part) for part in version.split(".")[:2])
    (lo, hi) = SUPPORTED_BEAM
    if not lo <= found < hi:
        raise ConfigError(
            f"CeapDaskRunner is built on Apache Beam {lo[0]}.{lo[1]}.x internals; this is Beam "
            f"{version}. Install through the lock (pip install -c requirements/lock.txt -e .) "
            "or update pipelines/beam_compat.py and run tests/pipelines/test_runner_equivalence.py"
        )


def combiner_lifting_overrides(options) -> list:
    """The direct runner's overrides that lift CombinePerKey into partial combines."""
    return [o for o in _get_transform_overrides(options) if "Combine" in type(o).__name__]


def lifted_combine_fn(node):
    """The CombineFn when ``node`` is the GroupByKey of a lifted CombinePerKey, else None."""
    parent = node.parent
    while parent is not None and parent.transform is not None:
        if isinstance(parent.transform, LiftedCombinePerKey):
            return parent.transform._combine_fn
        parent = parent.parent
    return None
