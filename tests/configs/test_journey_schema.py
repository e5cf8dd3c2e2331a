"""Journey steps in the program schema (issue 18, item 1; DESIGN §9): names, `after`,
`at`, `when`, checked when the program loads."""

from __future__ import annotations

from datetime import timedelta

import pytest

from tests.configs.test_schema import MINIMAL, error_of, parse, with_

CONTEXT = (
    "fields: {customer_id: customer_id, subject_id: product_id, context: [starts_at, ends_at]}\n"
)


def journey(channels: str) -> str:
    return with_(CONTEXT + "channels:\n" + channels, MINIMAL)


SCENARIO = """
  - {type: email, name: invite, template: event_invite, send_at: "10:00"}
  - {type: in_app, name: banner}
  - {type: email, name: nudge, after: {step: invite, delay: 2d}, when: not_responded}
  - {type: push, name: reminder, at: {column: starts_at, offset: -1d}, when: responded}
  - {type: email, name: survey, at: {column: ends_at, offset: 1h}, when: responded}
  - {type: sms, name: thanks, after: {step: survey}, when: "clicked:survey"}
"""


def test_the_scenario_loads_with_its_steps():
    program = parse(journey(SCENARIO))
    steps = {c.step: c for c in program.channels}
    assert list(steps) == ["invite", "banner", "nudge", "reminder", "survey", "thanks"]
    assert steps["nudge"].after.step == "invite" and steps["nudge"].after.delay == timedelta(days=2)
    assert steps["reminder"].at.offset == timedelta(days=-1)  # negative offsets are fine
    assert steps["survey"].at.offset == timedelta(hours=1)
    assert steps["thanks"].condition_steps == ["survey"]
    assert steps["banner"].step == "banner" and parse(MINIMAL).channels == []


def test_a_step_defaults_its_name_to_the_channel_type():
    program = parse(journey("  - {type: email}\n  - {type: in_app}\n"))
    assert [c.step for c in program.channels] == ["email", "in_app"]


@pytest.mark.parametrize(
    ("channels", "message"),
    [
        ("  - {type: email}\n  - {type: email}\n", "step names must be unique"),
        ("  - {type: email, name: a}\n  - {type: sms, name: a}\n", "step names must be unique"),
        ("  - {type: email, after: {step: sms}}\n  - {type: sms}\n", "is a later step"),
        ("  - {type: email, after: {step: email}}\n", "is a later step"),
        ("  - {type: email, after: {step: nope}}\n", "is no step"),
        ("  - {type: email, at: {column: price}}\n", "at.column 'price' must be in fields.context"),
        ("  - {type: email, when: 'opened:nope'}\n", "names no other step"),
        ("  - {type: email, when: 'opened:email'}\n", "names no other step"),
        ("  - {type: email, when: sometimes}\n", "String should match pattern"),
        ("  - {type: email, at: {column: starts_at}, after: {step: x}}\n", "not both"),
        ("  - {type: email, delay: 1d, at: {column: starts_at}}\n", "use at.offset"),
        ("  - {type: email, delay: -1d}\n", "not a duration"),
        ("  - {type: email, at: {column: starts_at, offset: 1}}\n", "needs a unit"),
    ],
)  # fmt: skip
def test_bad_steps_are_refused_at_load_naming_the_step(channels, message):
    assert message in error_of(journey(channels))


def test_capacity_per_subject_reads_a_column():
    program = parse(with_("ranking: {per: subject, top_n: 100, top_n_column: capacity}"))
    assert program.ranking.top_n_column == "capacity" and program.ranking.top_n == 100
    assert "use per: subject" in error_of(with_("ranking: {top_n_column: capacity}"))
