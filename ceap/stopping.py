"""A graceful stop for long-running (streaming) runs: SIGINT/SIGTERM set a flag; sources
stop reading, what is in flight drains through the graph, and the run ends cleanly."""

from __future__ import annotations

import signal
import threading

_stop = threading.Event()


def requested() -> bool:
    return _stop.is_set()


def request() -> None:
    _stop.set()


def reset() -> None:
    _stop.clear()


def wait(seconds: float) -> bool:
    """Sleeps up to ``seconds``, less when a stop is requested; returns whether it was."""
    return _stop.wait(seconds)


def install(message: str = "ceap: stopping: draining what is in flight") -> None:
    """Turns the first SIGINT/SIGTERM into a graceful stop (a second one ends at once)."""
    import os
    import sys

    def handler(signum, frame) -> None:
        if _stop.is_set():
            # A second signal: leave now. Nothing is lost: a restart replays every event
            # not yet accounted for in the outcome ledger.
            print(
                "ceap: stopped without draining; a restart resumes where it left off",
                file=sys.stderr,
                flush=True,
            )
            os._exit(130)
        print(message, file=sys.stderr, flush=True)
        _stop.set()

    signal.signal(signal.SIGINT, handler)
    signal.signal(signal.SIGTERM, handler)
