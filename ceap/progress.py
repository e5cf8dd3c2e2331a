"""Progress lines on stderr for runs that last more than a couple of seconds.

Stages bump a process-wide row counter (cheap: one add per batch); a daemon thread
prints the count and rate every few seconds. Runners that execute in other processes
report through Beam's own logs instead.
"""

from __future__ import annotations

import os
import sys
import threading
import time

_rows = 0
_lock = threading.Lock()


def add_rows(n: int) -> None:
    global _rows
    with _lock:
        _rows += n


class Progress:
    """Args:
    label: shown in brackets (the program, ``dispatch``).
    every: seconds between lines; default ``$CEAP_PROGRESS_SECONDS`` or 2.
    noun: what the counted rows are (``rows read``, ``outbox rows handled``).
    """

    def __init__(
        self,
        label: str,
        every: float | None = None,
        stream=None,
        noun: str = "rows read",
    ) -> None:
        self._label = label
        self._every = every or float(os.environ.get("CEAP_PROGRESS_SECONDS", "2"))
        self._noun = noun
        self._stream = stream or sys.stderr  # looked up now: sys.stderr may be redirected
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, daemon=True)
        self._tty = False
        self._shown = False

    def __enter__(self) -> Progress:
        global _rows
        with _lock:
            _rows = 0
        self._start = time.perf_counter()
        self._thread.start()
        return self

    def __exit__(self, *_: object) -> None:
        self._stop.set()
        self._thread.join(timeout=1)
        if self._tty and self._shown:
            print(file=self._stream, flush=True)  # end the line the bar was drawn on

    def _loop(self) -> None:
        # On a terminal: one line redrawn in place; redirected (logs, CI): a line each time.
        self._tty = getattr(self._stream, "isatty", lambda: False)()
        while not self._stop.wait(self._every):
            elapsed = time.perf_counter() - self._start
            rate = _rows / elapsed if elapsed else 0.0
            text = (
                f"  [{self._label}] {elapsed:5.0f}s  {_rows:,} {self._noun}  ({rate:,.0f} rows/s)"
                if _rows
                # Not "0 rows read": the source may be read already, its rows still on their
                # way (a run's first stages load their lookup tables and models first).
                else f"  [{self._label}] {elapsed:5.0f}s  starting: no rows through yet"
            )
            if self._tty:
                print(f"\r{text}\033[K", end="", file=self._stream, flush=True)
            else:
                print(text, file=self._stream, flush=True)
            self._shown = True
