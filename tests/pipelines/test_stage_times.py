"""Where a run's time went: the runner's execution-time metrics per step, in the order rows
meet the steps, recorded with the run."""

from __future__ import annotations

import json
import sqlite3

from apache_beam.metrics import monitoring_infos as mi

from pipelines.stage_times import stage_seconds, step_name
from tests.pipelines.test_migration import deliveries, home, program, run, write  # noqa: F401


class _Result:
    def __init__(self, msecs: dict[tuple[str, str], int]) -> None:
        self._infos = [mi.int64_counter(urn, ms, ptransform=t) for (urn, t), ms in msecs.items()]

    def monitoring_infos(self):
        yield from self._infos


def test_steps_are_the_graph_labels_one_or_two_levels_deep():
    assert step_name("Filters/Filter[trust]/ParDo(_FilterFn)") == "Filters/Filter[trust]"
    assert step_name("Enrich/Enrich[0:customer_id]") == "Enrich/Enrich[0:customer_id]"
    assert step_name("Rank/TopN/Precombine") == "Rank"
    assert step_name("Read[0:parquet]/ReadSplit") == "Read[0:parquet]"


def test_seconds_add_up_per_step_in_the_order_rows_meet_them():
    process, start = mi.PROCESS_BUNDLE_MSECS_URN, mi.START_BUNDLE_MSECS_URN
    result = _Result({
        (process, "Store/Upsert/ParDo(_WriteFn)"): 900,
        (process, "Filters/Filter[b]/ParDo(_FilterFn)"): 300,
        (process, "Filters/Filter[a]/ParDo(_FilterFn)"): 200,
        (process, "Rank/TopN/Precombine"): 400, (start, "Rank/TopN/Merge"): 100,
        (process, "Read[0:parquet]/ReadSplit"): 1500,
        (process, "Score/Models/ParDo(_ScoreFn)"): 0,
        (mi.ELEMENT_COUNT_URN, "Read[0:parquet]/ReadSplit"): 7,  # not a time
    })  # fmt: skip
    got = stage_seconds(result, filters=["b", "a"])
    assert got == {
        "Read[0:parquet]": 1.5, "Filters/Filter[b]": 0.3, "Filters/Filter[a]": 0.2,
        "Rank": 0.5, "Store": 0.9,
    }  # fmt: skip
    assert list(got) == [
        "Read[0:parquet]",
        "Filters/Filter[b]",
        "Filters/Filter[a]",
        "Rank",
        "Store",
    ]


def test_a_runner_without_the_metrics_gives_no_breakdown():
    assert stage_seconds(object()) == {}


def test_the_run_record_holds_its_time_apart_from_the_counts(tmp_path, home):  # noqa: F811
    source = write(tmp_path / "src", deliveries())
    funnel, _ = run(program(f"{{type: parquet, options: {{path: {source}}}}}"), tmp_path, "timed")
    assert "seconds" not in funnel.as_dict()  # the counts alone: runners compare them
    with sqlite3.connect(tmp_path / "timed.db") as con:
        (recorded,) = con.execute("SELECT funnel FROM runs WHERE run_id = 'timed'").fetchone()
    recorded = json.loads(recorded)
    assert recorded["seconds"] > 0 and isinstance(recorded["stage_seconds"], dict)
    assert recorded["read"] == funnel.read
