"""Progress on long runs: one line redrawn in place on a terminal, plain lines otherwise."""

from __future__ import annotations

import io
import time

from ceap.progress import Progress, add_rows


class Terminal(io.StringIO):
    def isatty(self) -> bool:
        return True


def run(stream: io.StringIO) -> str:
    with Progress("reviews", every=0.05, stream=stream):
        add_rows(1000)
        time.sleep(0.18)
    return stream.getvalue()


def test_a_terminal_gets_one_line_redrawn_in_place():
    out = run(Terminal())
    assert out.count("\r") >= 2 and out.count("\n") == 1 and out.endswith("\n")
    assert "[reviews]" in out and "1,000 rows read" in out


def test_a_log_gets_a_plain_line_each_time():
    out = run(io.StringIO())
    assert "\r" not in out and out.count("\n") >= 2 and "1,000 rows read" in out


def test_before_any_row_it_says_it_is_starting_not_zero_rows_read():
    stream = io.StringIO()
    with Progress("reviews", every=0.05, stream=stream):
        time.sleep(0.12)
    out = stream.getvalue()
    assert "starting" in out and "0 rows read" not in out
