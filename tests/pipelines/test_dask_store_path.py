"""Issue 19, item 2: a Dask run writes to the driver's store, not to a file its workers
find relative to their own working directory and environment. Here the scheduler and the
worker are separate processes started elsewhere (another directory, no CEAP_HOME), as on a
real cluster; the driver names its store relatively (``CEAP_HOME=home``) and the program
names its files relatively (``data/warehouse/...``, as the seed configs do)."""

from __future__ import annotations

import os
import re
import socket
import sqlite3
import subprocess
import sys
import time
from datetime import UTC, datetime
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
pytestmark = pytest.mark.slow


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture
def cluster(tmp_path):
    """A scheduler and one worker on loopback, run from ``tmp_path/worker`` without CEAP_HOME."""
    where = tmp_path / "worker"
    where.mkdir()
    env = {k: v for k, v in os.environ.items() if k != "CEAP_HOME"}
    env["PYTHONPATH"] = str(ROOT)
    port = free_port()
    dask = [sys.executable, "-m", "distributed.cli"]
    procs = [
        subprocess.Popen([*dask[:2], "distributed.cli.dask_scheduler", "--host", "127.0.0.1",
                          "--port", str(port), "--dashboard-address", ":0"], cwd=where, env=env,
                         stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL),
        subprocess.Popen([*dask[:2], "distributed.cli.dask_worker", f"tcp://127.0.0.1:{port}",
                          "--nthreads", "1", "--nworkers", "1", "--dashboard-address", ":0"],
                         cwd=where, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL),
    ]  # fmt: skip
    from distributed import Client

    deadline = time.monotonic() + 60
    while True:
        try:
            with Client(f"tcp://127.0.0.1:{port}", timeout=5) as client:
                if client.scheduler_info()["workers"]:
                    break
        except OSError:
            pass
        assert time.monotonic() < deadline, "the Dask cluster did not come up"
        time.sleep(0.5)
    yield f"tcp://127.0.0.1:{port}", where
    for proc in procs:
        proc.terminate()
        proc.wait(timeout=30)


def test_a_dask_run_writes_to_the_drivers_store(tmp_path, cluster):
    from sample import generate_warehouse

    address, worker_dir = cluster
    driver = tmp_path / "driver"
    # The seed program as written: its files relative to where run.py runs (the worker
    # runs elsewhere; it once looked for data/warehouse/customers in its own directory).
    generate_warehouse(driver / "data" / "warehouse", rows=2_000, seed=3,
                       as_of=datetime(2026, 11, 1, tzinfo=UTC))  # fmt: skip
    configs = driver / "configs"
    configs.mkdir(parents=True)
    (configs / "reviews.yaml").write_text((ROOT / "configs" / "reviews.yaml").read_text())
    env = {**os.environ, "CEAP_HOME": "home", "PYTHONPATH": str(ROOT)}
    done = subprocess.run(
        [sys.executable, str(ROOT / "run.py"), "--program", "reviews", "--config-dir", "configs",
         "--now", "2026-11-01", "--runner", "DaskRunner", f"--dask_client_address={address}"],
        cwd=driver, env=env, capture_output=True, text=True, timeout=600,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    assert not (worker_dir / ".ceap").exists(), "rows went to the workers' own store"
    with sqlite3.connect(driver / "home" / "ceap.db") as con:
        stored = con.execute("SELECT count(*) FROM candidates").fetchone()[0]
    printed = re.search(r"^\s+stored\s+([\d,]+)$", done.stdout, re.MULTILINE).group(1)
    assert stored > 0 and int(printed.replace(",", "")) == stored  # what it said it stored
    # The day's export on the same cluster, as the README writes it (a relative --output, the
    # default store): the driver's store is read and the files land where the CLI runs.
    done = subprocess.run(
        [sys.executable, str(ROOT / "run.py"), "export", "--date", "2026-11-01", "--output",
         "exports", "--runner", "DaskRunner", f"--dask_client_address={address}"],
        cwd=driver, env=env, capture_output=True, text=True, timeout=600,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    assert f"candidates: {stored:,} rows" in done.stdout, done.stdout
    assert list((driver / "exports" / "candidates").rglob("*.parquet"))
    assert not (worker_dir / "exports").exists() and not (worker_dir / ".ceap").exists()
