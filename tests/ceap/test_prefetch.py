"""prefetch: items in order, the producer's error at its place, an early stop stops it."""

from __future__ import annotations

import threading
import time

import pytest

from ceap.prefetch import prefetch


def test_items_come_in_order_produced_ahead():
    produced = []

    def items():
        for i in range(10):
            produced.append(i)
            yield i

    out = prefetch(items(), depth=2)
    assert next(out) == 0
    time.sleep(0.05)
    assert len(produced) >= 3  # the next ones were made meanwhile (two waiting, one in hand)
    assert list(out) == list(range(1, 10))


def test_an_error_in_the_producer_is_raised_where_it_happened():
    def items():
        yield 1
        yield 2
        raise ValueError("page 3 is corrupt")

    out = prefetch(items())
    assert [next(out), next(out)] == [1, 2]
    with pytest.raises(ValueError, match="page 3 is corrupt"):
        next(out)


def test_a_consumer_that_stops_early_stops_the_producer():
    made = []

    def endless():
        i = 0
        while True:
            made.append(i)
            yield i
            i += 1

    before = set(threading.enumerate())
    out = prefetch(endless(), depth=1)
    assert next(out) == 0
    (producer,) = set(threading.enumerate()) - before
    out.close()
    time.sleep(0.3)
    count = len(made)
    time.sleep(0.3)
    assert len(made) == count <= 4  # nothing made after the stop
    assert not producer.is_alive()
