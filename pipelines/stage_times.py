"""Where a run's time went: seconds per step of the graph, from the runner's own
execution-time metrics (Beam samples each transform's process, start and finish time).

The steps are the graph's stable labels one or two levels deep (``Read[0:parquet]``,
``ToCandidates``, ``Enrich/Enrich[0:customer_id]``, ``Filters/Filter[trust]``, ``Score``,
``Rank``, ``Store``), so the breakdown reads like the funnel. The figures are sampled
(Beam's state sampler), so a step under a few hundred milliseconds is approximate; they
sum the time of every worker thread, not wall time. A runner that reports no such
metrics (Dataflow's job, Dask) gives an empty breakdown.
"""

from __future__ import annotations

import logging
from collections import defaultdict

log = logging.getLogger(__name__)

NESTED = ("Enrich", "Filters", "Prefilter", "Migration")
"""Composite steps broken down by their children (one step per enrichment or filter)."""
ORDER = ("Read", "Traffic", "Shadow", "Sources", "ToCandidates", "DedupEvents", "Prefilter",
         "Enrich", "Filters", "Score", "Rank", "Store")  # fmt: skip
"""The graph's steps in the order rows meet them; others (dead letters, migration) last."""


def step_name(transform: str) -> str:
    """A transform's full label reduced to the step it is reported under."""
    parts = transform.split("/")
    if parts[0] in NESTED and len(parts) > 1:
        return "/".join(parts[:2])
    return parts[0]


def stage_seconds(result, filters: list[str] | None = None) -> dict[str, float]:
    """Seconds per step of a finished result, in the order rows meet them (``filters``:
    the filter labels in chain order)."""
    try:
        from apache_beam.metrics import monitoring_infos as mi

        infos = list(result.monitoring_infos())
    except Exception as exc:  # noqa: BLE001 - a breakdown is a detail, never a failure
        log.debug("no execution-time metrics from this runner: %s", exc)
        return {}
    urns = {mi.START_BUNDLE_MSECS_URN, mi.PROCESS_BUNDLE_MSECS_URN, mi.FINISH_BUNDLE_MSECS_URN}
    msecs: dict[str, int] = defaultdict(int)
    for info in infos:
        transform = info.labels.get("PTRANSFORM")
        if info.urn in urns and transform:
            msecs[step_name(transform)] += mi.extract_counter_value(info)
    rank = {f"Filter[{label}]": i for i, label in enumerate(filters or [])}

    def position(step: str) -> tuple:
        top, _, child = step.partition("/")
        first = next((i for i, s in enumerate(ORDER) if top.startswith(s)), len(ORDER))
        return (first, rank.get(child, len(rank)), step)

    return {
        step: round(msecs[step] / 1000, 3) for step in sorted(msecs, key=position) if msecs[step]
    }
