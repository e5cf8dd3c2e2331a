"""``run.py`` ends a finished command without the interpreter's teardown of every module
(~0.5 s of each command): its exit code, its output, its atexit handlers and its threads'
last work all still come through; under a profiler the normal exit runs."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]

PROGRAM = """
import atexit, sys, threading, time
import run
atexit.register(lambda: print("atexit ran", flush=False))
def late():
    time.sleep(0.2)
    print("thread finished", flush=False)
threading.Thread(target=late).start()
print("partial line, no newline", end="")
print("to stderr", file=sys.stderr, end="")
{profile}
run.exit_now(3)
"""


def python(code: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=60
    )


def test_the_exit_code_output_atexit_and_threads_come_through():
    done = python(PROGRAM.format(profile=""))
    assert done.returncode == 3
    assert done.stdout == "partial line, no newlinethread finished\natexit ran\n"
    assert done.stderr == "to stderr"


def test_under_a_profiler_the_normal_exit_runs():
    done = python(PROGRAM.format(profile="sys.setprofile(lambda *a: None)"))
    assert done.returncode == 3
    assert "atexit ran" in done.stdout and "thread finished" in done.stdout


def test_the_cli_exits_with_its_code_and_message():
    done = subprocess.run(
        [sys.executable, str(ROOT / "run.py"), "nosuchcommand"],
        capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert done.returncode == 2
    assert "nosuchcommand" in done.stderr
