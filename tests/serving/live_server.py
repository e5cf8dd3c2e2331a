"""``run.py serve`` as an operator starts it: a real process with its uvicorn workers on a
free loopback port, for the tests that need more than one worker or a real SIGTERM."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import httpx

from tests.channels.conftest import free_port

ROOT = Path(__file__).resolve().parents[2]


@contextmanager
def run_py_serve(
    store: str, config_dir: Path, env: dict[str, str], workers: int = 2
) -> Iterator[str]:
    """Yields the server's base URL once ``/healthz`` answers; stops it with SIGTERM (as
    ``docker stop`` does) and waits for every worker to exit."""
    port = free_port()
    env = dict(env)
    env.pop("PROMETHEUS_MULTIPROC_DIR", None)  # the server makes its own
    cmd = [sys.executable, "run.py", "serve", "--store", store, "--port", str(port),
           "--workers", str(workers), "--config-dir", str(config_dir)]  # fmt: skip
    proc = subprocess.Popen(cmd, cwd=ROOT, env=env, start_new_session=True,
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)  # fmt: skip
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.time() + 30
        while True:
            try:
                if httpx.get(f"{base}/healthz").status_code == 200:
                    break
            except httpx.TransportError:
                if time.time() > deadline or proc.poll() is not None:
                    raise AssertionError(proc.stderr.read().decode()[-2000:]) from None
                time.sleep(0.2)
        yield base
    finally:
        os.killpg(proc.pid, signal.SIGTERM)
        proc.wait(30)
