"""The outbox rulebook as pure functions: the same facts give the same decisions, whatever
backend read them (issue 15, item 2)."""

from __future__ import annotations

from datetime import UTC, datetime, time, timedelta

from channels.base import FrequencyCap
from channels.rules import ChannelRules, Screen, days, suppression

NOW = datetime(2026, 3, 2, 12, 0, tzinfo=UTC)


def row(**facts) -> dict:
    base = {
        "rowid": 1, "program": "reviews", "customer_id": "c1", "channel": "email",
        "shadow": 0, "cand_status": "live", "expires_at": "2026-04-01T00:00:00Z",
        "opt_outs": [], "sent_times": [], "in_flight": 0, "shadow_times": [],
        "shadow_in_flight": 0,
    }  # fmt: skip
    return base | facts


def test_suppression_reasons_in_order():
    rules = ChannelRules()
    assert suppression(row(), None, NOW) == "step no longer configured for the program"
    assert suppression(row(opt_outs=[("*", "email")]), rules, NOW) == "opted out"
    assert suppression(row(opt_outs=[("reviews", "*")]), rules, NOW) == "opted out"
    assert suppression(row(opt_outs=[("other", "*"), ("*", "sms")]), rules, NOW) is None
    assert suppression(row(cand_status=None), rules, NOW) == "candidate no longer in the store"
    assert suppression(row(cand_status="consumed"), rules, NOW) == "candidate consumed"
    assert suppression(row(expires_at="2026-03-02T12:00:00Z"), rules, NOW) == "candidate expired"
    # an opt-out wins over every other fact
    assert suppression(row(opt_outs=[("*", "*")], cand_status=None), rules, NOW) == "opted out"


def test_quiet_hours_defer_to_their_end_in_the_customers_zone():
    rules = ChannelRules(quiet=(time(21), time(8)))
    # 12:00 UTC is 21:00 in Tokyo: quiet until 08:00 local, 23:00 UTC
    assert Screen(NOW).schedule(row(), rules, "Asia/Tokyo") == (1, "defer", "2026-03-02T23:00:00Z")
    assert Screen(NOW).schedule(row(), rules, "Europe/London") is None


def test_cap_counts_sent_in_window_in_flight_and_this_rounds_rows():
    rules = ChannelRules(cap=FrequencyCap(max=2, window=timedelta(days=7)))
    old, recent = "2026-02-01T00:00:00Z", "2026-03-01T00:00:00Z"
    screen = Screen(NOW)
    assert screen.schedule(row(sent_times=[old, old, recent]), rules, None) is None
    # the second row of c1 this round meets the first one let through
    second = screen.schedule(row(rowid=2, sent_times=[old, old, recent]), rules, None)
    assert second == (2, "suppress", "frequency cap: 2 per 7d")
    assert Screen(NOW).schedule(row(in_flight=2), rules, None)[1] == "suppress"


def test_shadow_rows_count_against_shadow_contacts_only():
    rules = ChannelRules(shadow=True, cap=FrequencyCap(max=1, window=timedelta(days=7)))
    live_history = row(sent_times=["2026-03-01T00:00:00Z"], in_flight=3)
    assert Screen(NOW).schedule(live_history, rules, None) is None
    shadowed = row(shadow_times=["2026-03-01T00:00:00Z"])
    assert Screen(NOW).schedule(shadowed, rules, None)[1] == "suppress"


def test_window_text():
    assert days(timedelta(days=7)) == "7d"
    assert days(timedelta(hours=36)) == "129600s"


def test_conditions_read_responses_and_engagement_of_the_candidates_steps():
    from channels.rules import condition_met

    facts = row(responded=True, engaged=[("invite", "clicked")])
    assert condition_met("responded", facts) and not condition_met("not_responded", facts)
    assert condition_met("clicked:invite", facts) and condition_met("opened:invite", facts)
    assert not condition_met("opened:survey", facts) and condition_met("not_opened:survey", facts)
    rules = ChannelRules(when="opened:survey")
    assert suppression(facts, rules, NOW) == "condition not met: opened:survey"


def test_a_response_ends_the_journey_but_for_steps_that_ask_for_it():
    consumed = row(cand_status="consumed", responded=True, expires_at="2026-03-01T00:00:00Z")
    assert suppression(consumed, ChannelRules(), NOW) == "candidate consumed"
    assert suppression(consumed, ChannelRules(when="not_responded"), NOW) == "candidate consumed"
    # a `responded` step goes on, even past the candidate's expiry (the survey after the event)
    assert suppression(consumed, ChannelRules(when="responded"), NOW) is None
    live = row(responded=False)
    assert suppression(live, ChannelRules(when="responded"), NOW) == "condition not met: responded"
