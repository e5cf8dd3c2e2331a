"""Delivery feedback written in batches, one writer thread per API worker process (DESIGN §8).

Each link hit and each provider webhook used to be its own store write: a thread hop and a
SQLite transaction per request, with the API's worker processes taking turns on the write
lock (SQLite's busy handler sleeps 1 ms and more between tries) and WAL checkpoints run by
whichever request committed last. Clicks answered in ~2 ms at the median and 40-200 ms at
the 99th percentile at 1,000 requests/s (docs/feedback.md).

Here requests hand their ``Feedback`` to a queue; one thread takes everything queued, writes
it with ``apply_groups`` (the events of every request in one ``record_engagement``), and
gives each request its own counts. Two ways in:

- ``apply`` (webhooks, ``/v1/deliveries``, unsubscribe): the request waits for the write,
  so its answer still means "stored" (SNS retries what is not answered 2xx; an opt-out is
  honoured before the customer is told). Requests arriving while a batch is written go
  into the next: group commit.
- ``post`` (the click redirect, the open pixel): the answer does not wait for the disk.
  The write starts at once, lingering ``linger`` seconds (10 ms) to gather company: one
  event per transaction costs ~180 us of the writer's CPU, ten ~55 us each. When more than
  ``max_queued`` events are waiting (the store is stalled) a post waits like ``apply``:
  the queue is bounded and nothing is dropped.

The limit: an event that was posted is lost if the process is killed (SIGKILL, a crash, the
machine) before its batch is written: the events of the last ``linger`` and one write
(~10 ms) in the normal course, those of a stall while the store is locked by another writer,
never more than ``max_queued``. A clean stop (SIGTERM: uvicorn
finishes its requests, then the app's lifespan ends) writes everything first (``close``).
A repeated click or open is still one event (``record_engagement`` keeps the first), in a
batch or across batches. When a batch fails, each request's events are retried alone, so a
failure is the failing request's only: ``apply`` raises it (the provider retries), and for
``post`` the events are counted in ``ceap_feedback_lost`` and logged.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from prometheus_client import Counter

from serving.feedback import Applied, Feedback, apply_groups

log = logging.getLogger(__name__)
LOST = Counter("ceap_feedback_lost", "Posted feedback events whose write failed (logged)")


@dataclass
class _Entry:
    items: list[Feedback]
    now: datetime
    loop: asyncio.AbstractEventLoop | None
    waiter: asyncio.Future | None = None
    done: threading.Event = field(default_factory=threading.Event)


class FeedbackWriter:
    """Args:
    write: runs ``fn(store)`` on the calling thread with the store's writer (under its lock).
    clock: the receiving time of an event without ``at``, taken when it arrives.
    forget: drops a customer's cached eligibility (``Applied.customers``); called on the
        request's event loop, where the cache lives.
    linger: seconds a batch of posted events waits for more before it is written (none
        when a request waits for its write, or at close).
    max_queued: events posted and not yet written beyond which ``post`` waits.
    """

    def __init__(
        self, write: Callable[[Callable[[Any], Any]], Any], clock: Callable[[], datetime],
        forget: Callable[[str], None] = lambda _: None, linger: float = 0.010,
        max_queued: int = 10_000,
    ) -> None:  # fmt: skip
        self._write, self._clock, self._forget = write, clock, forget
        self.linger, self.max_queued = linger, max_queued
        self._cond = threading.Condition()
        self._pending: list[_Entry] = []
        self._queued = 0  # posted events not yet written
        self._writing: list[_Entry] = []
        self._thread: threading.Thread | None = None
        self._stopping = False
        self._hurry = threading.Event()  # cuts a linger short: a request waits, or close

    async def apply(self, items: list[Feedback]) -> Applied:
        """Writes ``items`` with whatever else is waiting; returns once they are stored."""
        loop = asyncio.get_running_loop()
        entry = _Entry(items, self._clock(), loop, loop.create_future())
        self._enqueue(entry)
        return await entry.waiter

    async def post(self, items: list[Feedback]) -> None:
        """Writes ``items`` behind the answer; waits only when the queue is full."""
        if self._queued + len(items) > self.max_queued:
            await self.apply(items)
            return
        self._enqueue(_Entry(items, self._clock(), asyncio.get_running_loop()))

    def flush(self, timeout: float | None = 30) -> bool:
        """Blocks until everything queued before the call is stored; False on timeout."""
        with self._cond:
            entries = [*self._pending, *self._writing]
        deadline = None if timeout is None else time.monotonic() + timeout
        for entry in entries:
            left = None if deadline is None else max(0.0, deadline - time.monotonic())
            if not entry.done.wait(left):
                return False
        return True

    def close(self) -> None:
        """Writes what is queued and stops the thread (a later request starts it again)."""
        with self._cond:
            thread, self._stopping = self._thread, True
            self._hurry.set()
            self._cond.notify()
        if thread is not None:
            thread.join()
        with self._cond:
            self._stopping = False
            self._hurry.clear()

    def _enqueue(self, entry: _Entry) -> None:
        with self._cond:
            self._pending.append(entry)
            if entry.waiter is None:
                self._queued += len(entry.items)
            else:
                self._hurry.set()
            if self._thread is None:
                self._thread = threading.Thread(target=self._run, name="feedback-writer",
                                                daemon=True)  # fmt: skip
                self._thread.start()
            self._cond.notify()

    def _run(self) -> None:
        while True:
            with self._cond:
                while not self._pending and not self._stopping:
                    self._cond.wait()
                if not self._pending:
                    self._thread = None  # under the lock: the next request starts another
                    return
            if self.linger > 0:
                self._hurry.wait(self.linger)
            with self._cond:
                batch, self._pending = self._pending, []
                self._writing = batch
                if not self._stopping:
                    self._hurry.clear()
            outcomes = self._write_batch(batch)
            with self._cond:
                self._queued -= sum(len(e.items) for e in batch if e.waiter is None)
                self._writing = []
            self._settle(outcomes)
            for entry in batch:
                entry.done.set()

    def _write_batch(self, batch: list[_Entry]) -> list[tuple[_Entry, Applied | Exception]]:
        """Each entry with its counts, or with the error that its write alone raised."""
        try:
            results = self._write(lambda s: apply_groups(s, [(e.items, e.now) for e in batch]))
        except Exception as exc:  # noqa: BLE001 - retried alone, then reported per request
            if len(batch) == 1:
                return [(batch[0], exc)]
            return [outcome for entry in batch for outcome in self._write_batch([entry])]
        return list(zip(batch, results, strict=True))

    def _settle(self, outcomes: list[tuple[_Entry, Applied | Exception]]) -> None:
        """Hands the outcomes to their event loops, one wake-up per loop (each costs a
        write to the loop's self-pipe); counts and logs posted events that failed."""
        by_loop: dict[asyncio.AbstractEventLoop, list] = {}
        for entry, outcome in outcomes:
            if isinstance(outcome, Exception) and entry.waiter is None:
                LOST.inc(len(entry.items))
                log.error("feedback lost: %d posted event(s) could not be written: %s",
                          len(entry.items), outcome, exc_info=outcome)  # fmt: skip
            elif entry.loop is not None and (entry.waiter is not None or outcome.customers):
                by_loop.setdefault(entry.loop, []).append((entry.waiter, outcome))
        for loop, settled in by_loop.items():
            with contextlib.suppress(RuntimeError):  # the loop closed: nobody is waiting
                loop.call_soon_threadsafe(_settled, settled, self._forget)


def _settled(settled: list[tuple], forget: Callable[[str], None]) -> None:
    """On the requests' event loop: drops stale eligibility, wakes the waiting requests."""
    for waiter, outcome in settled:
        if isinstance(outcome, Applied):
            for customer in outcome.customers:
                forget(customer)
        if waiter is None or waiter.done():  # posted, or the request was cancelled
            continue
        if isinstance(outcome, Exception):
            waiter.set_exception(outcome)
        else:
            waiter.set_result(outcome)
