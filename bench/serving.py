"""Serving API load benchmark: latency at fixed request rates, and saturation throughput.

    python bench/serving.py [--rows 1000000] [--customers 100000] [--workers 2]
                            [--rates 500,1000,2000] [--duration 10] [--db /tmp/ceap-bench.db]

1. Loads ``--rows`` candidates into a SQLite store through ``upsert_candidates`` (Arrow
   tables of CANDIDATE_COLUMNS; reused when the file already holds them). 10% of them are
   older than their program's staleness bound, so they go through the eligibility checks.
2. Starts ``run.py serve`` (uvicorn, ``--workers`` processes) in its own process group.
3. Drives ``GET /v1/customers/{id}/candidates`` from a separate process: an open-loop
   asyncio client sends at a fixed rate whether or not answers came back (latency is
   measured from the scheduled send time, so queueing counts), rotating customer ids; then
   ``wrk`` (Debian package) at full speed for the saturation throughput, when installed,
   else the same client closed-loop.
Prints p50/p99/p99.9 and errors (non-200, timeouts, resets) per rate. Targets on a 2-core box:
p99 < 5 ms at 1,000 req/s, zero errors at 2,000 req/s, >= 5,000 req/s saturation.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import random
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
KEY = "bench-key"
PROGRAMS = [("reviews", "product", "review"), ("video_ratings", "video", "rate")]


def customer(i: int, customers: int) -> str:
    return f"C{(i * 7919) % customers:08d}"


# -- 1. data ---------------------------------------------------------------------------------
def load(db: Path, rows: int, customers: int, chunk: int = 100_000) -> None:
    sys.path.insert(0, str(ROOT))
    import pyarrow as pa

    from stores.base import CANDIDATE_COLUMNS, iso
    from stores.sqlite import SqliteStore

    store = SqliteStore(db)
    have = store.connection.execute("SELECT count(*) FROM candidates").fetchone()[0]
    if have >= rows:
        print(f"store {db}: {have:,} candidates already", flush=True)
        return
    rng = random.Random(7)
    now = datetime.now(UTC)
    fresh, stale = iso(now - timedelta(minutes=5)), iso(now - timedelta(days=2))
    expires, deliver = iso(now + timedelta(days=30)), iso(now - timedelta(minutes=1))
    start = time.perf_counter()
    for lo in range(0, rows, chunk):
        n = min(chunk, rows - lo)
        kinds = [PROGRAMS[rng.random() < 0.3] for _ in range(n)]
        cols = {
            "program": [k[0] for k in kinds],
            "customer_id": [f"C{(lo + i) % customers:08d}" for i in range(n)],
            "subject_type": [k[1] for k in kinds],
            "subject_id": [f"S{lo + i:09d}" for i in range(n)],
            "action": [k[2] for k in kinds],
            "context": ['{"region": "EU", "category": "books"}'] * n,
            "score": [rng.random() for _ in range(n)],
            "model_id": ["m1"] * n,
            "treatment": ["control"] * n,
            "created_at": [stale if rng.random() < 0.1 else fresh for _ in range(n)],
            "expires_at": [expires] * n,
            "deliver_after": [deliver] * n,
            "status": ["live"] * n,
        }
        store.upsert_candidates(pa.table({c: cols[c] for c in CANDIDATE_COLUMNS}))
        print(f"  loaded {lo + n:,}/{rows:,}", end="\r", flush=True)
    took = time.perf_counter() - start
    print(f"loaded {rows:,} candidates in {took:.0f}s ({rows / took:,.0f} rows/s)", flush=True)
    store.close()


# -- 2. server -------------------------------------------------------------------------------
def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start_server(db: Path, port: int, workers: int) -> subprocess.Popen:
    env = dict(os.environ, CEAP_API_KEYS=KEY)
    env.pop("PROMETHEUS_MULTIPROC_DIR", None)
    cmd = [sys.executable, "run.py", "serve", "--store", f"sqlite:{db}",
           "--port", str(port), "--workers", str(workers)]  # fmt: skip
    proc = subprocess.Popen(cmd, cwd=ROOT, env=env, start_new_session=True)
    deadline = time.time() + 60
    while time.time() < deadline:
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=1) as s:
                s.sendall(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
                if s.recv(64).startswith(b"HTTP/1.1 200"):
                    time.sleep(1.0 if workers > 1 else 0.2)  # let every worker come up
                    return proc
        except OSError:
            time.sleep(0.2)
    stop_server(proc)
    raise SystemExit("the server did not come up")


def stop_server(proc: subprocess.Popen) -> None:
    os.killpg(proc.pid, signal.SIGTERM)  # its own session: uvicorn and its workers
    try:
        proc.wait(15)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)


# -- 3. load generator (runs in its own process: `bench/serving.py _drive ...`) ----------------
async def _drive(port: int, rate: float, duration: float, customers: int, conns: int) -> dict:
    """Open loop at ``rate`` req/s (0: closed loop, as fast as ``conns`` connections go)."""
    pool: asyncio.Queue = asyncio.Queue()
    for _ in range(conns):
        pool.put_nowait(await asyncio.open_connection("127.0.0.1", port))
    latencies: list[float] = []
    errors = {"status": 0, "io": 0}

    async def one(i: int, scheduled: float) -> None:
        reader, writer = await pool.get()
        path = f"/v1/customers/{customer(i, customers)}/candidates?limit=20"
        try:
            writer.write(f"GET {path} HTTP/1.1\r\nHost: b\r\nX-API-Key: {KEY}\r\n\r\n".encode())
            head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 5)
            length = int(re.search(rb"(?i)content-length: *(\d+)", head).group(1))
            await asyncio.wait_for(reader.readexactly(length), 5)
            if head[9:12] != b"200":
                errors["status"] += 1
        except (OSError, asyncio.IncompleteReadError, TimeoutError, AttributeError):
            errors["io"] += 1
            writer.close()
            reader, writer = await asyncio.open_connection("127.0.0.1", port)
        latencies.append(time.perf_counter() - scheduled)
        pool.put_nowait((reader, writer))

    tasks: list[asyncio.Task] = []
    start = time.perf_counter()
    if rate > 0:
        total = int(rate * duration)
        for i in range(total):
            due = start + i / rate
            if (wait := due - time.perf_counter()) > 0:
                await asyncio.sleep(wait)
            tasks.append(asyncio.create_task(one(i, due)))
        await asyncio.gather(*tasks)
    else:
        counter = iter(range(10**9))

        async def loop() -> None:
            while time.perf_counter() - start < duration:
                await one(next(counter), time.perf_counter())

        await asyncio.gather(*(loop() for _ in range(conns)))
    elapsed = time.perf_counter() - start
    latencies.sort()

    def pct(p: float) -> float:
        return latencies[min(len(latencies) - 1, int(p * len(latencies)))] * 1000

    return {
        "sent": len(latencies), "achieved": len(latencies) / elapsed, "p50": pct(0.5),
        "p99": pct(0.99), "p999": pct(0.999), "errors": errors["status"] + errors["io"],
    }  # fmt: skip


def drive(port: int, rate: float, duration: float, customers: int, conns: int) -> dict:
    cmd = [sys.executable, __file__, "_drive", str(port), str(rate), str(duration),
           str(customers), str(conns)]  # fmt: skip
    out = subprocess.run(cmd, check=True, capture_output=True, text=True).stdout
    return json.loads(out.strip().splitlines()[-1])


WRK_SCRIPT = """
counter = 0
request = function()
  counter = counter + 1
  local id = string.format("C%%08d", (counter * 7919) %% %d)
  return wrk.format("GET", "/v1/customers/" .. id .. "/candidates?limit=20",
                    {["X-API-Key"] = "%s"})
end
"""


def saturate_wrk(port: int, duration: float, customers: int, conns: int) -> dict:
    with tempfile.NamedTemporaryFile("w", suffix=".lua", delete=False) as f:
        f.write(WRK_SCRIPT % (customers, KEY))
    cmd = ["wrk", "-t1", f"-c{conns}", f"-d{int(duration)}s", "--latency", "-s", f.name,
           f"http://127.0.0.1:{port}"]  # fmt: skip
    out = subprocess.run(cmd, check=True, capture_output=True, text=True).stdout
    os.unlink(f.name)
    rps = float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1))
    bad = re.search(r"Non-2xx or 3xx responses: (\d+)", out)
    sock = re.search(r"Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)", out)
    errors = (int(bad.group(1)) if bad else 0) + (sum(map(int, sock.groups())) if sock else 0)
    p50 = re.search(r"50%\s+([\d.]+)(\w+)", out)
    p99 = re.search(r"99%\s+([\d.]+)(\w+)", out)
    return {
        "rps": rps,
        "errors": errors,
        "p50": "".join(p50.groups()),
        "p99": "".join(p99.groups()),
    }


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if argv and argv[0] == "_drive":
        port, rate, duration, customers, conns = argv[1:6]
        result = asyncio.run(
            _drive(int(port), float(rate), float(duration), int(customers), int(conns))
        )
        print(json.dumps(result))
        return 0
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--customers", type=int, default=100_000)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--rates", default="500,1000,2000")
    parser.add_argument("--duration", type=float, default=10)
    parser.add_argument("--conns", type=int, default=64)
    parser.add_argument("--db", default=str(Path(tempfile.gettempdir()) / "ceap-bench-serving.db"))
    args = parser.parse_args(argv)
    db = Path(args.db)
    load(db, args.rows, args.customers)
    port = free_port()
    server = start_server(db, port, args.workers)
    try:
        drive(port, 200, 2, args.customers, 8)  # warm-up: pages in, imports, connections
        print(f"\n{args.workers} uvicorn worker(s), {args.rows:,} candidates, "
              f"{args.customers:,} customers, {args.duration:.0f}s per rate")  # fmt: skip
        print(
            f"{'rate':>8} {'achieved':>9} {'p50 ms':>8} {'p99 ms':>8} {'p99.9 ms':>9} {'errors':>7}"
        )
        for rate in (float(r) for r in args.rates.split(",")):
            r = drive(port, rate, args.duration, args.customers, args.conns)
            print(f"{rate:>8.0f} {r['achieved']:>9.0f} {r['p50']:>8.2f} {r['p99']:>8.2f} "
                  f"{r['p999']:>9.2f} {r['errors']:>7}", flush=True)  # fmt: skip
        if shutil.which("wrk"):
            s = saturate_wrk(port, args.duration, args.customers, args.conns)
            print(f"saturation (wrk, {args.conns} connections): {s['rps']:,.0f} req/s, "
                  f"p50 {s['p50']}, p99 {s['p99']}, errors {s['errors']}")  # fmt: skip
        else:
            s = drive(port, 0, args.duration, args.customers, args.conns)
            print(f"saturation (asyncio client, closed loop, {args.conns} connections): "
                  f"{s['achieved']:,.0f} req/s, p50 {s['p50']:.2f} ms, p99 {s['p99']:.2f} ms, "
                  f"errors {s['errors']}")  # fmt: skip
    finally:
        stop_server(server)
    return 0


if __name__ == "__main__":
    sys.exit(main())
