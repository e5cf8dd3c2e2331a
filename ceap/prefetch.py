"""``prefetch``: produce the next items of an iterator on a second thread while the caller
works on the current one.

A batch run is mostly one thread: a source decodes a batch (Parquet, CSV: native code that
releases the GIL), then every step works on it while the decoder idles. Reading ahead keeps
the second core decoding the next batch meanwhile. Order is kept, an error in the producer
is raised in the consumer at the item where it happened, and a consumer that stops early
(closes the generator) stops the producer too.
"""

from __future__ import annotations

import queue
import threading
from collections.abc import Iterable, Iterator
from typing import TypeVar

T = TypeVar("T")
_DONE = object()


class _Failed:
    def __init__(self, error: BaseException) -> None:
        self.error = error


def prefetch(items: Iterable[T], depth: int = 2) -> Iterator[T]:
    """Yields ``items`` in order, up to ``depth`` of them produced ahead on a thread."""
    ready: queue.Queue = queue.Queue(maxsize=depth)
    stop = threading.Event()

    def put(item: object) -> bool:
        while not stop.is_set():
            try:
                ready.put(item, timeout=0.1)
                return True
            except queue.Full:
                continue
        return False

    def produce() -> None:
        try:
            for item in items:
                if not put(item):
                    return
            put(_DONE)
        except BaseException as exc:  # noqa: BLE001 - handed to the consumer, raised there
            put(_Failed(exc))

    worker = threading.Thread(target=produce, name="ceap-prefetch", daemon=True)
    worker.start()
    try:
        while True:
            item = ready.get()
            if item is _DONE:
                return
            if isinstance(item, _Failed):
                raise item.error
            yield item
    finally:
        stop.set()
        worker.join(timeout=5)
