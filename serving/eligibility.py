"""Real-time eligibility re-checks of stale candidates (docs/architecture.md, "Serving API", seed use case 7).

A candidate older than its program's ``staleness`` bound (by created_at) may no longer be
worth showing: the customer opted out, already acted, or the subject left the catalogue.
Before such a candidate is served, every check answers for it. Checks call other systems,
so each runs with a timeout, behind its own circuit breaker, with a short-lived cache of its
answers; a check that fails, times out or is broken *degrades* per policy (``serve`` the
candidate anyway, the default, or ``omit`` it) and never fails the request.

A check is a small class: ``name``, ``check(candidate) -> bool`` (True = still eligible;
sync, run on a thread, or ``async``) and ``key(candidate)`` (what its answer depends on,
the cache key). The candidate is the store's row (program, customer_id, subject_type,
subject_id, ...).
"""

from __future__ import annotations

import asyncio
import inspect
import logging
import time
from collections.abc import Awaitable, Callable, Hashable
from concurrent.futures import ThreadPoolExecutor
from typing import Any, Literal

from prometheus_client import Counter

from ceap.resilience import CircuitBreaker

log = logging.getLogger(__name__)

# hit rate = hits / (hits + misses), per check
CACHE = Counter("ceap_eligibility_cache", "Eligibility answer cache lookups", ["check", "result"])
ELIGIBILITY = Counter(
    "ceap_eligibility_outcomes",
    "Eligibility check outcomes: eligible, ineligible, error, timeout, breaker_open",
    ["check", "outcome"],
)

Policy = Literal["serve", "omit"]
ELIGIBLE, INELIGIBLE, OMITTED = "eligible", "ineligible", "omitted"
# outcomes that degrade per policy
ERROR, TIMEOUT, BREAKER_OPEN = "error", "timeout", "breaker_open"


class EligibilityCheck:
    """Base of the checks.

    Args:
        timeout: seconds one answer may take; later counts as a failure (default 50 ms).
        failures: consecutive failures that open the breaker.
        cooldown: seconds the breaker stays open before one trial call (half-open).
        cache_ttl: seconds an answer is reused for the same ``key`` (0: no cache).
        inline: call a sync check on the event loop, not a thread: for local reads of tens
            of microseconds (the embedded store), where a thread hop costs more than the
            call. It cannot be interrupted; one slower than ``timeout`` counts as a failure.
    """

    name = "check"

    def __init__(
        self,
        timeout: float = 0.05,
        failures: int = 5,
        cooldown: float = 10.0,
        cache_ttl: float = 30.0,
        inline: bool = False,
    ) -> None:
        self.timeout, self.inline = timeout, inline
        self.breaker = CircuitBreaker(failures, cooldown)
        self.cache = TTLCache(cache_ttl)

    def key(self, candidate: dict[str, Any]) -> Hashable:
        return (candidate["program"], candidate["customer_id"], candidate["subject_id"])

    def check(self, candidate: dict[str, Any]) -> bool | Awaitable[bool]:
        raise NotImplementedError


class OptOutCheck(EligibilityCheck):
    """The platform's opt-out registry: out of this program (or all) on every channel."""

    name = "opt_out"

    def __init__(self, store: Callable[[], Any], **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self._store = store

    def check(self, candidate: dict[str, Any]) -> bool:
        return not self._store().is_opted_out(candidate["customer_id"], candidate["program"])


class AlreadyActedCheck(EligibilityCheck):
    """Response history: the customer has not already acted on this subject."""

    name = "already_acted"

    def __init__(self, store: Callable[[], Any], **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self._store = store

    def check(self, candidate: dict[str, Any]) -> bool:
        c = candidate
        return not self._store().has_response(c["program"], c["customer_id"], c["subject_id"])


class CatalogueCheck(EligibilityCheck):
    """The subject is still eligible (in stock, still on sale, event not past ...).

    Args:
        lookup: ``lookup(subject_type, subject_id) -> bool``, or a URL template such as
            ``http://catalogue/items/{subject_type}/{subject_id}`` answered 2xx (eligible)
            or 404/410 (not); any other status is a failure.
    """

    name = "catalogue"

    def __init__(self, lookup: Callable[[str, str], bool] | str, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self._lookup = lookup

    def key(self, candidate: dict[str, Any]) -> Hashable:
        return (candidate["subject_type"], candidate["subject_id"])  # shared across customers

    def check(self, candidate: dict[str, Any]) -> bool:
        if callable(self._lookup):
            return bool(self._lookup(candidate["subject_type"], candidate["subject_id"]))
        import httpx

        url = self._lookup.format(**candidate)
        status = httpx.get(url, timeout=self.timeout).status_code
        if status in (404, 410):
            return False
        if 200 <= status < 300:
            return True
        raise RuntimeError(f"catalogue answered {status}")


class TTLCache:
    """A small per-process cache of answers, each kept ``ttl`` seconds."""

    def __init__(self, ttl: float, max_size: int = 100_000) -> None:
        self.ttl, self.max_size = ttl, max_size
        self._data: dict[Hashable, tuple[float, bool]] = {}

    def get(self, key: Hashable) -> bool | None:
        hit = self._data.get(key)
        if hit is None or hit[0] < time.monotonic():
            return None
        return hit[1]

    def put(self, key: Hashable, value: bool) -> None:
        if self.ttl <= 0:
            return
        if len(self._data) >= self.max_size:
            self._data.clear()  # crude but bounded; entries live seconds anyway
        self._data[key] = (time.monotonic() + self.ttl, value)

    def clear(self) -> None:
        self._data.clear()


class Eligibility:
    """Runs the checks on stale candidates, concurrently.

    Args:
        checks: the checks, all applied to every stale candidate.
        policies: program -> ``serve`` | ``omit`` when a check cannot answer (default serve).
        threads: the pool that runs synchronous checks (a hung call holds one thread until
            it returns; the breaker stops sending more).
    """

    def __init__(
        self,
        checks: list[EligibilityCheck],
        policies: dict[str, Policy] | None = None,
        threads: int = 16,
    ) -> None:
        self.checks = checks
        self.policies = policies or {}
        self.inline = all(c.inline for c in checks)
        self._threads, self._executor = threads, None

    async def verdict(self, candidate: dict[str, Any]) -> str:
        """``ineligible`` when a check says so (the caller expires the candidate); ``omitted``
        when a check cannot answer and the program's policy is omit; else ``eligible``."""
        if self.inline:
            outcomes = [await self._run(c, candidate) for c in self.checks]
        else:
            outcomes = await asyncio.gather(*(self._run(c, candidate) for c in self.checks))
        if INELIGIBLE in outcomes:
            return INELIGIBLE
        degraded = any(o != ELIGIBLE for o in outcomes)
        if degraded and self.policies.get(candidate["program"], "serve") == "omit":
            return OMITTED
        return ELIGIBLE

    async def _run(self, check: EligibilityCheck, candidate: dict[str, Any]) -> str:
        key = check.key(candidate)
        cached = check.cache.get(key)
        CACHE.labels(check.name, "miss" if cached is None else "hit").inc()
        if cached is not None:
            outcome = ELIGIBLE if cached else INELIGIBLE
        elif not check.breaker.allow():
            outcome = BREAKER_OPEN
        else:
            outcome = await self._call(check, candidate)
            check.breaker.record(outcome in (ELIGIBLE, INELIGIBLE))
            if outcome in (ELIGIBLE, INELIGIBLE):
                check.cache.put(key, outcome == ELIGIBLE)
        ELIGIBILITY.labels(check.name, outcome).inc()
        return outcome

    async def _call(self, check: EligibilityCheck, candidate: dict[str, Any]) -> str:
        try:
            if check.inline and not inspect.iscoroutinefunction(check.check):
                start = time.perf_counter()
                answer = check.check(candidate)
                if time.perf_counter() - start > check.timeout:
                    return TIMEOUT
            elif inspect.iscoroutinefunction(check.check):
                answer = await asyncio.wait_for(check.check(candidate), check.timeout)
            else:
                future = asyncio.get_running_loop().run_in_executor(
                    self._pool, check.check, candidate
                )
                answer = await asyncio.wait_for(future, check.timeout)
        except TimeoutError:
            return TIMEOUT
        except Exception:  # noqa: BLE001 - any failure of a check degrades, never 500s
            log.warning("eligibility check %s failed", check.name, exc_info=True)
            return ERROR
        return ELIGIBLE if answer else INELIGIBLE

    def forget(self, customer_id: str) -> None:
        """Drops cached answers about a customer (after an opt-out or a response)."""
        for check in self.checks:
            data = check.cache._data
            for key in [k for k in data if isinstance(k, tuple) and customer_id in k]:
                data.pop(key, None)

    @property
    def _pool(self) -> ThreadPoolExecutor:
        if self._executor is None:
            self._executor = ThreadPoolExecutor(self._threads, thread_name_prefix="eligibility")
        return self._executor

    def close(self) -> None:
        """Stops the pool (reopened on next use); a hung check's thread is left to finish."""
        if self._executor is not None:
            self._executor.shutdown(wait=False, cancel_futures=True)
            self._executor = None


def default_checks(store: Callable[[], Any], local: bool = False) -> list[EligibilityCheck]:
    """opt_out and already_acted, on the serving store (``local``: the embedded one, read
    inline); add a CatalogueCheck per deployment."""
    return [OptOutCheck(store, inline=local), AlreadyActedCheck(store, inline=local)]
