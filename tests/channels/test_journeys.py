"""What a waiting step becomes when its parent is settled (channels/journeys.py)."""

from __future__ import annotations

from datetime import UTC, datetime

import pyarrow as pa

from channels.dispatcher import dispatch
from channels.journeys import Journeys
from configs.schema import parse_program, read_yaml
from stores.base import OUTBOX_COLUMNS
from stores.spec import open_store
from tests.channels.conftest import NOW as SEEDED
from tests.channels.conftest import World

REMINDER = """  - type: email
    name: reminder
    after: {{step: email, delay: 2d}}
    options: {recipients}
"""

PROGRAM = """
program: events
action: register
subject_type: event
source: [{type: parquet, options: {path: unused}}]
fields: {customer_id: customer_id, subject_id: event_id}
scoring: {models: [{id: m, type: column, options: {column: score}}]}
channels:
  - {type: email, name: invite}
  - {type: email, name: nudge, after: {step: invite, delay: 2d}, send_at: "10:00"}
  - {type: push, name: last_call, after: {step: nudge, delay: 1h}}
  - {type: in_app}
"""
NOW = datetime(2026, 3, 2, 12, 0, tzinfo=UTC)
ROW = {"program": "events", "customer_id": "c1", "subject_id": "e1"}


def journeys() -> Journeys:
    return Journeys([parse_program(read_yaml(PROGRAM))])


def test_a_sent_parent_makes_its_children_due_after_their_delay_at_send_at_local_time():
    tokyo = ROW | {"step": "invite", "recipient": {"timezone": "Asia/Tokyo"}}
    (nudge,) = journeys().settlements([(tokyo, "sent")], NOW)
    # 2 days later is 2026-03-04 21:00 in Tokyo: the next 10:00 there is 2026-03-05 01:00 UTC
    assert nudge == ROW | {
        "step": "nudge",
        "status": "pending",
        "send_after": "2026-03-05T01:00:00Z",
    }
    (last,) = journeys().settlements([(ROW | {"step": "nudge"}, "shadowed")], NOW)
    assert last["step"] == "last_call" and last["send_after"] == "2026-03-02T13:00:00Z"


def test_a_suppressed_or_failed_parent_ends_its_descendants_naming_their_parent():
    ended = journeys().settlements([(ROW | {"step": "invite"}, "failed")], NOW)
    assert [(s["step"], s["status"], s["reason"]) for s in ended] == [
        ("nudge", "suppressed", "parent step invite failed"),
        ("last_call", "suppressed", "parent step nudge suppressed"),
    ]


def test_rows_without_children_or_still_pending_settle_nothing():
    assert journeys().settlements([(ROW | {"step": "in_app"}, "sent")], NOW) == []
    assert journeys().settlements([(ROW | {"step": "invite"}, "pending")], NOW) == []


def test_a_dispatch_releases_children_a_killed_dispatcher_left_waiting(tmp_path, smtp):
    """The parent was recorded sent, then the dispatcher died before releasing its child:
    the next dispatch finds the child and makes it due from the parent's own send time."""
    world = World(tmp_path)
    recipients = f"{{recipients: {{type: parquet, options: {{path: {world.customers}}}}}}}"
    world.write_program(extra=REMINDER.format(recipients=recipients))
    (key,) = world.seed(1)
    row = world.outbox()[key] | {"step": "reminder", "status": "waiting", "idempotency_key": "k2"}
    store = open_store(world.store_spec)
    texts = ("reason", "template")
    store.enqueue_outbox(pa.table({
        c: pa.array([row[c]], pa.string() if c in texts else None)
        for c in [*OUTBOX_COLUMNS, "template", "shadow", "created_at", "step"]
    }))  # fmt: skip
    store.connection.execute(  # the parent's record, then the crash: no release
        "UPDATE outbox SET status = 'sent', sent_at = '2024-03-01T09:00:00Z' "
        "WHERE idempotency_key = ?", (key,),
    )  # fmt: skip
    store.close()
    dispatch(world.store_spec, world.config_dir, now=SEEDED)
    reminder = world.outbox()["k2"]
    assert (reminder["status"], reminder["send_after"]) == ("pending", "2024-03-03T09:00:00Z")
