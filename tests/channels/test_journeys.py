"""What a waiting step becomes when its parent is settled (channels/journeys.py)."""

from __future__ import annotations

from datetime import UTC, datetime

from channels.journeys import Journeys
from configs.schema import parse_program, read_yaml

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
