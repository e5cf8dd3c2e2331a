"""The one circuit breaker and backoff policy (ceap/resilience.py)."""

from __future__ import annotations

import time

from ceap.resilience import CircuitBreaker, backoff_delay


def test_a_breaker_opens_once_at_its_threshold_and_says_so_once():
    breaker = CircuitBreaker(failures=3, cooldown=None)
    assert [breaker.record(ok=False) for _ in range(2)] == [False, False]
    assert breaker.allow() and breaker.record(ok=False) is True  # this one opened it
    assert breaker.state == "open" and not breaker.allow()
    assert breaker.record(ok=False) is False  # already open: no second alert


def test_without_a_cooldown_it_stays_open_with_one_it_half_opens():
    stays, heals = CircuitBreaker(1, cooldown=None), CircuitBreaker(1, cooldown=0.05)
    stays.record(ok=False)
    heals.record(ok=False)
    time.sleep(0.06)
    assert stays.state == "open" and heals.state == "half_open"
    assert heals.allow() and not heals.allow()  # one trial call at a time
    heals.record(ok=True)
    assert heals.state == "closed" and heals.consecutive_failures == 0


def test_a_success_resets_the_count():
    breaker = CircuitBreaker(2, cooldown=None)
    breaker.record(ok=False)
    breaker.record(ok=True)
    assert breaker.record(ok=False) is False and breaker.state == "closed"


def test_backoff_grows_is_capped_and_jitters_within_half_to_full():
    assert [backoff_delay(a, base=0.1, cap=1.0, jitter=False) for a in range(6)] == [
        0.1, 0.2, 0.4, 0.8, 1.0, 1.0
    ]  # fmt: skip
    delays = [backoff_delay(3, base=0.1, cap=1.0) for _ in range(200)]
    assert all(0.4 <= d <= 0.8 for d in delays) and len(set(delays)) > 1
