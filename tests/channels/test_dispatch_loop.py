"""``run.py dispatch --loop``: a long-running dispatcher (systemd, a container) keeps sending
what becomes due and stops cleanly on SIGTERM."""

from __future__ import annotations

import signal
from collections import Counter

from tests.channels.conftest import SmtpSink, start_smtp
from tests.channels.test_exactly_once import dispatcher, wait_for


def test_loop_sends_what_becomes_due_and_stops_cleanly_on_sigterm(world):
    sink = SmtpSink()
    controller, port = start_smtp(sink)
    try:
        first = world.seed(10)
        proc = dispatcher(world, port, "--loop", "0.2")
        wait_for(lambda: len(sink.messages) >= 10, timeout=60)
        later = world.seed(10, start=10)  # enqueued while it runs, as the nightly job does
        wait_for(lambda: len(sink.messages) >= 20, timeout=60)
        proc.send_signal(signal.SIGTERM)
        out, err = proc.communicate(timeout=30)
    finally:
        controller.stop()
    assert proc.returncode == 0, err
    assert "stopping after the round in flight" in err
    assert Counter(sink.keys()) == Counter(first + later)  # each once
    rows = world.outbox()
    assert all(rows[k]["status"] == "sent" for k in first + later)
    assert "\ntotal" in out  # a summary per pass (the later rows may join the first one)
