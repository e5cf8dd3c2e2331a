"""The built-in filters: each called directly through ``split()`` (the filter contract), and
chains of them in a TestPipeline through ``ApplyFilters``, with the funnel read back from
the pipeline's counters."""

from __future__ import annotations

import json
from datetime import timedelta

import apache_beam as beam
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from apache_beam.testing.test_pipeline import TestPipeline
from apache_beam.testing.util import assert_that, equal_to

from ceap.errors import ConfigError
from configs.schema import parse_program, read_yaml
from stores.base import iso
from tests.conftest import NOW
from transforms.filters.chain import ApplyFilters
from transforms.filters.history import DedupFilter, FrequencyCapFilter, OptOutFilter
from transforms.filters.values import ExcludeValuesFilter, GeographicFilter
from transforms.funnel import Funnel


def candidates(*rows: tuple, **extra: list) -> pa.RecordBatch:
    """Candidate rows (customer_id, subject_id), events a day old, plus extra columns."""
    n = len(rows)
    return pa.RecordBatch.from_pydict(
        {
            "customer_id": pa.array([r[0] for r in rows], pa.string()),
            "subject_id": pa.array([r[1] for r in rows], pa.string()),
            "event_time": pa.array([NOW - timedelta(days=1)] * n, pa.timestamp("us", tz="UTC")),
            **extra,
        }
    )


def split(f, batch) -> tuple[list, list]:
    """(kept customer ids, [(removed customer id, reason)])."""
    kept, removed, reasons = f.split(batch)
    assert kept.num_rows + removed.num_rows == batch.num_rows
    assert len(reasons) == removed.num_rows
    gone = list(zip(removed.column("customer_id").to_pylist(), reasons.to_pylist(), strict=True))
    return kept.column("customer_id").to_pylist(), gone


def sent(store, *asks: tuple, days_ago: float = 1) -> None:
    """Outbox rows (program, customer, subject, channel) that the dispatcher has sent."""
    at = iso(NOW - timedelta(days=days_ago))
    keys = [f"{p}|{c}|{s}|{ch}" for p, c, s, ch in asks]
    cols = ["program", "customer_id", "subject_id", "channel"]
    table = pa.table(
        {
            **{name: [a[i] for a in asks] for i, name in enumerate(cols)},
            "send_after": [at] * len(asks),
            "status": ["pending"] * len(asks),
            "attempts": [0] * len(asks),
            "idempotency_key": keys,
            "reason": pa.nulls(len(asks), pa.string()),
            "template": pa.nulls(len(asks), pa.string()),
            "shadow": [0] * len(asks),
            "created_at": [at] * len(asks),
        }
    )
    store.enqueue_outbox(table)
    store.connection.executemany(
        "UPDATE outbox SET status = 'sent', sent_at = ? WHERE idempotency_key = ?",
        [(at, k) for k in keys],
    )


# --- exclude_values, geographic ------------------------------------------------------------


def test_exclude_values(ctx):
    batch = candidates(
        ("c1", "p1"), ("c2", "p2"), ("c3", "p3"), ("c4", "p4"),
        category=["adult", "books", None, "tobacco"],
    )  # fmt: skip
    f = ExcludeValuesFilter({"column": "category", "values": ["adult", "tobacco"]}, ctx)
    kept, gone = split(f, batch)
    assert kept == ["c2", "c3"]  # a null is not an excluded value
    assert gone == [
        ("c1", "category is an excluded value"),
        ("c4", "category is an excluded value"),
    ]


def test_exclude_values_matches_across_types(ctx):
    batch = candidates(("c1", "p1"), ("c2", "p2"), ("c3", "p3"), store_id=["1", "02", "3"])
    f = ExcludeValuesFilter({"column": "store_id", "values": [1, 3], "reason": "closed"}, ctx)
    assert split(f, batch) == (["c2"], [("c1", "closed"), ("c3", "closed")])

    batch = candidates(("c1", "p1"), ("c2", "p2"), age=pa.array([17, 30]))
    f = ExcludeValuesFilter({"column": "age", "values": ["17", "minor"]}, ctx)
    assert split(f, batch)[0] == ["c2"]


def test_a_missing_column_names_the_filter_and_the_column(ctx):
    f = ExcludeValuesFilter({"column": "colour", "values": ["red"]}, ctx)
    with pytest.raises(ConfigError, match="filter exclude_values: column 'colour' is not on"):
        f.split(candidates(("c1", "p1")))


def test_geographic(ctx):
    batch = candidates(
        ("c1", "p1"), ("c2", "p2"), ("c3", "p3"), ("c4", "p4"), ("c5", "p5"),
        region=["eu", "us", None, "apac", "eu"],
        event_region=["eu", "us", "eu", "apac", "us"],
    )  # fmt: skip
    f = GeographicFilter({"allow": ["eu", "us", "apac"], "deny": ["apac"]}, ctx)
    assert split(f, batch) == (
        ["c1", "c2", "c5"],
        [("c3", "region unknown"), ("c4", "region is a denied region")],
    )
    f = GeographicFilter({"allow": ["eu"], "match_column": "event_region"}, ctx)
    assert split(f, batch) == (
        ["c1"],
        [
            ("c2", "region not in target regions"),
            ("c3", "region unknown"),
            ("c4", "region not in target regions"),
            ("c5", "region differs from event_region"),
        ],
    )
    with pytest.raises(ValueError, match="at least one of allow, deny, match_column"):
        GeographicFilter({}, ctx)


# --- opt_out -------------------------------------------------------------------------------


def test_opt_out_registry_program_level_and_channel_only(ctx, store):
    store.add_opt_out("c1", None, None)  # everything
    store.add_opt_out("c2", "reviews", None)  # this program
    store.add_opt_out("c3", "video_ratings", None)  # another program
    store.add_opt_out("c4", "reviews", "email")  # one channel: the outbox row is suppressed
    store.add_opt_out("c5", None, "sms")
    batch = candidates(*[(f"c{i}", "p1") for i in range(1, 7)])
    kept, gone = split(OptOutFilter({}, ctx), batch)
    assert kept == ["c3", "c4", "c5", "c6"]
    assert gone == [("c1", "opted out"), ("c2", "opted out")]

    assert split(OptOutFilter({"registry": False}, ctx), batch)[0] == [f"c{i}" for i in range(1, 7)]


def test_opt_out_when_every_opt_out_is_global(ctx, store):
    """The registry's program column is then all null: global opt-outs must still apply."""
    store.add_opt_out("c1", None, None)
    store.add_opt_out("c2", None, None)
    assert split(OptOutFilter({}, ctx), candidates(("c1", "p"), ("c2", "p"), ("c3", "p"))) == (
        ["c3"],
        [("c1", "opted out"), ("c2", "opted out")],
    )


def test_opt_out_column_and_history_table(ctx, store, tmp_path):
    store.add_opt_out("c1", None, None)
    pq.write_table(
        pa.table({"cust": ["c4", "c5"], "prog": ["reviews", "video_ratings"]}),
        tmp_path / "optouts.parquet",
    )
    f = OptOutFilter(
        {
            "column": "opted_out",
            "history": {
                "type": "parquet",
                "options": {"path": str(tmp_path / "optouts.parquet")},
                "customer_column": "cust",
                "program_column": "prog",
            },
        },
        ctx,
    )
    batch = candidates(
        *[(f"c{i}", "p1") for i in range(1, 7)], opted_out=[True, True, None, False, False, False]
    )
    kept, gone = split(f, batch)
    assert kept == ["c3", "c5", "c6"]  # a null flag is not an opt-out
    assert gone == [("c1", "opted out"), ("c2", "opted out (opted_out)"), ("c4", "opted out")]


# --- frequency_cap -------------------------------------------------------------------------


@pytest.fixture
def contacts(store, tmp_path):
    """c1: two reviews asks (one through two channels); c2: one reviews ask and one
    video_ratings ask; c3: only old contacts; c4: reviews asks in the warehouse history."""
    sent(
        store,
        ("reviews", "c1", "p1", "email"),
        ("reviews", "c1", "p1", "sms"),  # the same ask through a second channel
        ("reviews", "c1", "p2", "email"),
        ("reviews", "c2", "p1", "email"),
        ("video_ratings", "c2", "v1", "push"),
    )
    sent(store, ("reviews", "c3", "p1", "email"), ("reviews", "c3", "p2", "email"), days_ago=40)
    path = tmp_path / "contacts.parquet"
    pq.write_table(
        pa.table(
            {
                "customer_id": ["c4", "c4", "c4", "c5"],
                "product_id": ["p1", "p2", "p3", "p1"],
                "program": ["reviews", "reviews", "video_ratings", "reviews"],
                "contacted_at": pa.array(
                    [NOW - timedelta(days=d) for d in (2, 3, 4, 60)], pa.timestamp("us", tz="UTC")
                ),
            }
        ),
        path,
    )
    return {
        "type": "parquet",
        "options": {"path": str(path)},
        "subject_column": "product_id",
        "program_column": "program",
        "time_column": "contacted_at",
    }


BATCH = [(f"c{i}", "p9") for i in range(1, 7)]


def test_frequency_cap_counts_distinct_asks_of_the_program_in_the_window(ctx, contacts):
    f = FrequencyCapFilter({"max": 2, "window": "30d", "history": contacts}, ctx)
    kept, gone = split(f, candidates(*BATCH))
    # c1: 2 asks (p1 twice through two channels is one ask); c4: 2 asks in the history;
    # c2: 1 reviews ask (its video_ratings one is another program); c3: too old; c5: too old.
    assert kept == ["c2", "c3", "c5", "c6"]
    assert gone == [
        ("c1", "frequency cap: 2+ contacts in 30d (program)"),
        ("c4", "frequency cap: 2+ contacts in 30d (program)"),
    ]
    longer = FrequencyCapFilter({"max": 2, "window": "45d", "history": contacts}, ctx)
    assert split(longer, candidates(*BATCH))[0] == ["c2", "c5", "c6"]


def test_frequency_cap_scope_all_counts_every_program(ctx, contacts):
    f = FrequencyCapFilter({"max": 2, "window": "30d", "scope": "all", "history": contacts}, ctx)
    # c2 now has 2 asks (reviews p1 + video_ratings v1); c4 has 3 in the history.
    assert split(f, candidates(*BATCH))[0] == ["c3", "c5", "c6"]


def test_frequency_cap_scope_subject(ctx, contacts):
    f = FrequencyCapFilter(
        {"max": 1, "window": "30d", "scope": "subject", "history": contacts}, ctx
    )
    batch = candidates(("c4", "p1"), ("c4", "p3"), ("c4", "p9"), ("c5", "p1"), ("c6", "p1"))
    kept, removed, _ = f.split(batch)
    # c4/p3 was asked by another program; c5/p1 outside the window.
    assert removed.to_pylist()[0]["subject_id"] == "p1" and removed.num_rows == 1
    assert kept.column("subject_id").to_pylist() == ["p3", "p9", "p1", "p1"]


def test_frequency_cap_an_ask_in_outbox_and_history_counts_once(ctx, store, tmp_path):
    """The warehouse keeps a copy of what the platform sent: the same (program, subject) ask
    found in both must count once, as distinct asks are what the cap limits."""
    sent(store, ("reviews", "c1", "p1", "email"), ("video_ratings", "c1", "v1", "push"))
    pq.write_table(
        pa.table(
            {
                "customer_id": ["c1", "c1"],
                "subject_id": ["p1", "v1"],
                "program": ["reviews", "video_ratings"],
                "contacted_at": pa.array(
                    [NOW - timedelta(days=1)] * 2, pa.timestamp("us", tz="UTC")
                ),
            }
        ),
        tmp_path / "copy.parquet",
    )
    history = {
        "type": "parquet",
        "options": {"path": str(tmp_path / "copy.parquet")},
        "program_column": "program",
        "time_column": "contacted_at",
    }
    for scope, asks in (("program", 1), ("all", 2)):
        options = {"max": asks + 1, "window": "30d", "scope": scope, "history": history}
        assert split(FrequencyCapFilter(options, ctx), candidates(("c1", "p9")))[0] == ["c1"]
        options["max"] = asks
        assert split(FrequencyCapFilter(options, ctx), candidates(("c1", "p9")))[0] == []


def test_frequency_cap_discounts_a_sent_message_only_for_its_own_event(ctx, store, add_candidates):
    """Re-running the batch that produced a sent message must not cap that very candidate,
    but a later event for the same subject (another delivery) is capped by it."""
    sent(store, ("reviews", "c1", "p1", "email"))
    add_candidates(
        {"customer_id": "c1", "subject_id": "p1", "deliver_after": iso(NOW - timedelta(days=1))}
    )
    f = FrequencyCapFilter({"max": 1, "window": "30d", "scope": "subject"}, ctx)

    same_event = candidates(("c1", "p1"))  # event_time NOW - 1 day, as stored
    assert split(f, same_event)[0] == ["c1"]

    later = same_event.set_column(
        2, "event_time", pa.array([NOW - timedelta(hours=2)], pa.timestamp("us", tz="UTC"))
    )
    assert split(f, later)[1] == [("c1", "frequency cap: 1+ contacts in 30d (subject)")]


# --- dedup ---------------------------------------------------------------------------------


def test_dedup_live_acted_and_history(ctx, store, add_candidates, tmp_path):
    add_candidates(
        {"customer_id": "c1", "subject_id": "p1"},  # live, from an earlier event
        {"customer_id": "c2", "subject_id": "p2", "expires_at": iso(NOW - timedelta(hours=1))},
        {"customer_id": "c3", "subject_id": "p3", "program": "video_ratings"},
    )
    store.record_response("reviews", "c4", "p4", {"stars": 5})
    store.record_response("video_ratings", "c5", "p5", None)
    pq.write_table(
        pa.table({"cust": ["c6", "c7"], "item": ["p6", "p7"], "prog": ["reviews", "other"]}),
        tmp_path / "responses.parquet",
    )
    history = {
        "type": "parquet",
        "options": {"path": str(tmp_path / "responses.parquet")},
        "customer_column": "cust",
        "subject_column": "item",
        "program_column": "prog",
    }
    batch = candidates(*[(f"c{i}", f"p{i}") for i in range(1, 9)], ("c1", "p9"))
    kept, gone = split(DedupFilter({"history": history}, ctx), batch)
    assert kept == ["c2", "c3", "c5", "c7", "c8", "c1"]
    assert gone == [
        ("c1", "already a live candidate"),
        ("c4", "already acted on this subject"),
        ("c6", "already acted on this subject"),
    ]
    kept, gone = split(DedupFilter({"live": False, "acted": False}, ctx), batch)
    assert gone == []


def test_dedup_keeps_the_candidate_of_the_same_event_on_a_rerun(ctx, add_candidates):
    event = NOW - timedelta(days=1)
    add_candidates({"customer_id": "c1", "subject_id": "p1", "deliver_after": iso(event)})
    assert split(DedupFilter({}, ctx), candidates(("c1", "p1")))[0] == ["c1"]


# --- chains in a pipeline ------------------------------------------------------------------

PROGRAM = """
program: reviews
action: review
subject_type: product
source: {type: parquet, options: {path: unused}}
fields: {customer_id: customer_id, subject_id: subject_id}
scoring: {models: [{id: m, type: column, options: {column: trust}}]}
"""


def filter_chain(yaml_filters: str):
    program = parse_program(read_yaml(PROGRAM + yaml_filters), "reviews.yaml")
    return program.filters, program.filter_labels()


def test_chain_of_value_filters_in_a_pipeline(ctx, store):
    store.add_opt_out("c5", None, None)
    specs, labels = filter_chain("""
filters:
  - {type: expression, options: {keep: "trust >= 0.3", reason: low trust}}
  - {type: expression, options: {keep: "region != 'mars'"}}
  - {type: exclude_values, name: restricted, options: {column: category, values: [adult]}}
  - {type: opt_out}
""")
    assert labels == ["0:expression", "1:expression", "restricted", "3:opt_out"]
    first = candidates(
        ("c1", "p1"), ("c2", "p2"), ("c3", "p3"),
        trust=[0.9, 0.1, None], region=["eu", "eu", "eu"], category=["books", "books", "books"],
    )  # fmt: skip
    second = candidates(
        ("c4", "p4"), ("c5", "p5"), ("c6", "p6"), ("c7", "p7"),
        trust=[0.5, 0.5, 0.5, 0.8], region=["mars", "eu", "eu", "eu"],
        category=["books", "books", "adult", "toys"],
    )  # fmt: skip
    with TestPipeline() as p:
        filtered = p | beam.Create([first, second]) | "Filters" >> ApplyFilters(specs, labels, ctx)
        kept = filtered.kept | beam.FlatMap(lambda b: b["customer_id"].to_pylist())
        assert_that(kept, equal_to(["c1", "c7"]), label="Kept")
    funnel = Funnel.from_result("reviews", p.result)
    assert funnel.filtered == {
        ("0:expression", "low trust"): 2,
        ("1:expression", "not (region != 'mars')"): 1,
        ("restricted", "category is an excluded value"): 1,
        ("3:opt_out", "opted out"): 1,
    }


def test_chain_of_history_filters_in_a_pipeline(ctx, store, add_candidates, contacts):
    add_candidates({"customer_id": "c6", "subject_id": "p9"})
    store.record_response("reviews", "c2", "p9", None)
    specs, labels = filter_chain(f"""
filters:
  - type: frequency_cap
    options: {{max: 2, window: 30d, history: {json.dumps(contacts)}}}
  - type: dedup
""")
    with TestPipeline() as p:
        filtered = (
            p | beam.Create([candidates(*BATCH)]) | "Filters" >> ApplyFilters(specs, labels, ctx)
        )
        kept = filtered.kept | beam.FlatMap(lambda b: b["customer_id"].to_pylist())
        assert_that(kept, equal_to(["c3", "c5"]), label="Kept")
    funnel = Funnel.from_result("reviews", p.result)
    assert funnel.filtered == {
        ("0:frequency_cap", "frequency cap: 2+ contacts in 30d (program)"): 2,
        ("1:dedup", "already acted on this subject"): 1,
        ("1:dedup", "already a live candidate"): 1,
    }
