"""Serving API load benchmark: latency at fixed request rates, and saturation throughput.

    python bench/serving.py [--rows 1000000] [--customers 100000] [--workers 2]
                            [--rates 500,1000,2000] [--duration 10] [--db /tmp/ceap-bench.db]
                            [--parts candidates,links,webhooks] [--link-rate 1000]
                            [--batches 100] [--notifications 10000]

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

``links``: the click redirect ``/c/{token}`` and the open pixel ``/o/{token}.gif`` at
``--link-rate`` each (target p99 < 5 ms at 1,000 req/s), each request an event (a store write,
behind the answer) on one of 10,000 outbox rows; the clicks stored are counted once the
server has stopped. ``webhooks``: ``--batches`` ``POST /v1/deliveries`` of 500
events, then ``--notifications`` SES events in SNS messages signed by tests/serving/sns_stub.py
(whose HTTPS host serves the server the certificate), each sent once over --webhook-conns.
Target >= 2,000 events/s, nothing lost: events stored (by this run's ids) = events accepted.
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
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
KEY = "bench-key"
SIGNING_KEY = "bench-signing-key-" + "x" * 16
LINK_ROWS = 10_000
RUN = uuid.uuid4().hex[:8]  # in this run's event ids and click URLs: its events, counted apart
PROGRAMS = [("reviews", "product", "review"), ("video_ratings", "video", "rate")]


def customer(i: int, customers: int) -> str:
    return f"C{(i * 7919) % customers:08d}"


# -- 1. data ---------------------------------------------------------------------------------
def load(db: Path, rows: int, customers: int, chunk: int = 100_000) -> None:
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
            "program": [k[0] for k in kinds], "subject_type": [k[1] for k in kinds],
            "customer_id": [f"C{(lo + i) % customers:08d}" for i in range(n)],
            "subject_id": [f"S{lo + i:09d}" for i in range(n)], "action": [k[2] for k in kinds],
            "context": ['{"region": "EU", "category": "books"}'] * n,
            "score": [rng.random() for _ in range(n)], "model_id": ["m1"] * n,
            "treatment": ["control"] * n, "expires_at": [expires] * n,
            "created_at": [stale if rng.random() < 0.1 else fresh for _ in range(n)],
            "deliver_after": [deliver] * n, "status": ["live"] * n,
        }  # fmt: skip
        store.upsert_candidates(pa.table({c: cols[c] for c in CANDIDATE_COLUMNS}))
        print(f"  loaded {lo + n:,}/{rows:,}", end="\r", flush=True)
    took = time.perf_counter() - start
    print(f"loaded {rows:,} candidates in {took:.0f}s ({rows / took:,.0f} rows/s)", flush=True)
    store.close()


def load_outbox(db: Path, n: int) -> list[str]:
    """``n`` outbox rows (keys ``bench-<i>``) for links and webhooks to name; their keys."""
    import pyarrow as pa

    from stores.base import OUTBOX_COLUMNS
    from stores.sqlite import SqliteStore

    keys = [f"bench-{i}" for i in range(n)]
    store = SqliteStore(db)
    sql = "SELECT count(*) FROM outbox WHERE idempotency_key LIKE 'bench-%'"
    if store.connection.execute(sql).fetchone()[0] < n:
        row = {"program": "reviews", "channel": "email", "send_after": "2024-03-01T00:00:00Z",
               "status": "pending", "attempts": 0, "reason": None, "template": None, "shadow": 0,
               "created_at": "2024-03-01T00:00:00Z"}  # fmt: skip
        cols = {c: [row.get(c)] * n for c in [*OUTBOX_COLUMNS, "template", "shadow", "created_at"]}
        cols.update(customer_id=[f"C{i % 100_000:08d}" for i in range(n)], idempotency_key=keys,
                    subject_id=[f"S{i:09d}" for i in range(n)])  # fmt: skip
        types = {"reason": pa.string(), "template": pa.string()}
        store.enqueue_outbox(pa.table({c: pa.array(v, types.get(c)) for c, v in cols.items()}))
    store.close()
    return keys


# -- 2. server -------------------------------------------------------------------------------
def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start_server(db: Path, port: int, workers: int, **extra: str) -> subprocess.Popen:
    env = dict(os.environ, CEAP_API_KEYS=KEY, CEAP_SIGNING_KEY=SIGNING_KEY, **extra)
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
def http_get(path: str, key: bool = True) -> str:
    auth = f"X-API-Key: {KEY}\r\n" if key else ""
    return f"GET {path} HTTP/1.1\r\nHost: b\r\n{auth}\r\n"


def http_post(path: str, body: str, content_type: str, key: bool = False) -> str:
    """``body`` is ASCII (``json.dumps``), so its length in characters is in bytes."""
    auth = f"X-API-Key: {KEY}\r\n" if key else ""
    return (f"POST {path} HTTP/1.1\r\nHost: b\r\n{auth}Content-Type: {content_type}\r\n"
            f"Content-Length: {len(body)}\r\n\r\n{body}")  # fmt: skip


async def _drive(port: int, rate: float, duration: float, conns: int, requests: list[bytes],
                 expect: bytes) -> dict:  # fmt: skip
    """Open loop at ``rate`` req/s (request i is ``requests[i % len]``); ``rate`` 0: closed
    loop, as fast as ``conns`` connections go, for ``duration`` s (0: each request once)."""
    pool: asyncio.Queue = asyncio.Queue()
    for _ in range(conns):
        pool.put_nowait(await asyncio.open_connection("127.0.0.1", port))
    latencies: list[float] = []
    errors = {"status": 0, "io": 0}

    async def one(i: int, scheduled: float) -> None:
        reader, writer = await pool.get()
        try:
            writer.write(requests[i % len(requests)])
            head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 10)
            length = int(re.search(rb"(?i)content-length: *(\d+)", head).group(1))
            await asyncio.wait_for(reader.readexactly(length), 10)
            if head[9:12] != expect:
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
        for i in range(int(rate * duration)):
            due = start + i / rate
            if (wait := due - time.perf_counter()) > 0:
                await asyncio.sleep(wait)
            tasks.append(asyncio.create_task(one(i, due)))
        await asyncio.gather(*tasks)
    else:
        counter = iter(range(len(requests) if duration <= 0 else 10**9))

        async def loop() -> None:
            for i in counter:  # shared by the connections' loops
                if duration > 0 and time.perf_counter() - start >= duration:
                    break
                await one(i, time.perf_counter())

        await asyncio.gather(*(loop() for _ in range(conns)))
    elapsed = time.perf_counter() - start
    latencies.sort()

    def pct(p: float) -> float:
        return latencies[min(len(latencies) - 1, int(p * len(latencies)))] * 1000

    return {
        "sent": len(latencies), "achieved": len(latencies) / elapsed, "p50": pct(0.5),
        "p99": pct(0.99), "p999": pct(0.999), "errors": errors["status"] + errors["io"],
        "elapsed": elapsed,
    }  # fmt: skip


def drive(port: int, rate: float, duration: float, conns: int, requests: list[str],
          expect: str = "200") -> dict:  # fmt: skip
    with tempfile.NamedTemporaryFile("w", suffix=".json", delete=False) as f:
        json.dump(requests, f)
    cmd = [sys.executable, __file__, "_drive", str(port), str(rate), str(duration), str(conns),
           f.name, expect]  # fmt: skip
    try:
        out = subprocess.run(cmd, check=True, capture_output=True, text=True).stdout
    finally:
        os.unlink(f.name)
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
    return {"rps": rps, "errors": errors, "p50": "".join(p50.groups()),
            "p99": "".join(p99.groups())}  # fmt: skip


# -- 4. the parts ----------------------------------------------------------------------------
HEADER = f"{'':<22}{'rate':>6} {'achieved':>9} {'p50 ms':>8} {'p99 ms':>8} {'p99.9 ms':>9} {'errors':>7}"  # fmt: skip


def row(name: str, rate: float, r: dict) -> str:
    return (f"{name:<22}{rate:>6.0f} {r['achieved']:>9.0f} {r['p50']:>8.2f} {r['p99']:>8.2f} "
            f"{r['p999']:>9.2f} {r['errors']:>7}")  # fmt: skip


def bench_candidates(port: int, args: argparse.Namespace) -> None:
    reads = [http_get(f"/v1/customers/{customer(i, args.customers)}/candidates?limit=20")
             for i in range(min(args.customers, 50_000))]  # fmt: skip
    drive(port, 200, 2, 8, reads)  # warm-up: pages in, imports, connections
    print(f"\ncandidates: {args.rows:,} candidates, {args.customers:,} customers, "
          f"{args.duration:.0f}s per rate\n{HEADER}")  # fmt: skip
    for rate in (float(r) for r in args.rates.split(",")):
        print(row("GET candidates", rate, drive(port, rate, args.duration, args.conns, reads)),
              flush=True)  # fmt: skip
    if shutil.which("wrk"):
        s = saturate_wrk(port, args.duration, args.customers, args.conns)
        print(f"saturation (wrk, {args.conns} connections): {s['rps']:,.0f} req/s, "
              f"p50 {s['p50']}, p99 {s['p99']}, errors {s['errors']}")  # fmt: skip
    else:
        s = drive(port, 0, args.duration, args.conns, reads)
        print(f"saturation (asyncio client, closed loop, {args.conns} connections): "
              f"{s['achieved']:,.0f} req/s, p50 {s['p50']:.2f} ms, p99 {s['p99']:.2f} ms, "
              f"errors {s['errors']}")  # fmt: skip


def bench_links(port: int, args: argparse.Namespace, keys: list[str]) -> int:
    """Each click names its own URL (a new event); each pixel a key (new on a first run).
    Returns the clicks answered 302 (each a distinct event)."""
    from ceap.tokens import Purpose, sign

    n = int(args.link_rate * args.duration)
    clicks = [http_get("/c/" + sign(Purpose.CLICK, keys[i % len(keys)],
                                    f"https://example.com/p/{i}?run={RUN}"), key=False)
              for i in range(n)]  # fmt: skip
    pixels = [http_get(f"/o/{sign(Purpose.OPEN, keys[i % len(keys)])}.gif", key=False)
              for i in range(n)]  # fmt: skip
    drive(port, 200, 2, 8, clicks[-400:], "302")  # warm-up
    print(f"\nlinks: each request records an event, {args.duration:.0f}s per route\n{HEADER}")
    answered = {}
    for name, requests, expect in (("click /c/ (302)", clicks, "302"),
                                   ("pixel /o/.gif (200)", pixels, "200")):  # fmt: skip
        r = drive(port, args.link_rate, args.duration, args.conns, requests, expect)
        print(row(name, args.link_rate, r), flush=True)
        answered[expect] = r["sent"] - r["errors"]
    return answered["302"]


def count_clicks(db: Path, answered: int) -> None:
    """Clicks are written behind their answers: counted once the server has stopped (SIGTERM,
    a clean shutdown that writes what each worker still held)."""
    import sqlite3

    with sqlite3.connect(db) as con:
        stored = con.execute("SELECT count(*) FROM engagement_events WHERE event = 'clicked' "
                             "AND event_id LIKE ?", (f"%run={RUN}",)).fetchone()[0]  # fmt: skip
    print(
        f"clicks stored after the server stopped: {stored:,} of {answered:,} answered "
        f"(lost {answered - stored:,})"
    )


def bench_webhooks(port: int, args: argparse.Namespace, keys: list[str], stub, db: Path) -> None:
    """Each workload once, closed loop; then the events stored under this run's ids."""
    import sqlite3

    def delivery(i: int) -> dict:
        return {"idempotency_key": keys[i % len(keys)], "event": "delivered", "id": f"{RUN}-d-{i}"}

    def ses_delivery(i: int) -> str:
        event = {"eventType": "Delivery", "delivery": {"recipients": ["c@example.com"]},
                 "mail": {"messageId": f"ses-{i}", "tags": {"ceap_key": [keys[i % len(keys)]]}}}  # fmt: skip
        return json.dumps(stub.notification(event, message_id=f"{RUN}-s-{i}"))

    batches = [http_post("/v1/deliveries", json.dumps([delivery(b * 500 + j) for j in range(500)]),
                         "application/json", key=True) for b in range(args.batches)]  # fmt: skip
    notifications = [http_post("/v1/webhooks/ses", ses_delivery(i), "text/plain; charset=UTF-8")
                     for i in range(args.notifications)]  # fmt: skip
    print(f"\nwebhooks: each workload sent once over {args.webhook_conns} connections")
    for name, requests, per, tag in (
        ("POST /v1/deliveries, 500 events each", batches, 500, "d"),
        ("POST /v1/webhooks/ses, signed SNS, 1 event each", notifications, 1, "s"),
    ):
        r = drive(port, 0, 0, args.webhook_conns, requests)
        sent = per * (r["sent"] - r["errors"])
        with sqlite3.connect(db) as con:
            stored = con.execute("SELECT count(*) FROM engagement_events WHERE event_id LIKE ?",
                                 (f"{RUN}-{tag}-%",)).fetchone()[0]  # fmt: skip
        print(f"  {name}: {len(requests):,} requests, {per * len(requests):,} events in "
              f"{r['elapsed']:.1f}s = {per * len(requests) / r['elapsed']:,.0f} events/s "
              f"(p50 {r['p50']:.1f} ms, p99 {r['p99']:.1f} ms, errors {r['errors']}); "
              f"stored {stored:,} of {sent:,} accepted (lost {sent - stored:,})", flush=True)  # fmt: skip


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if argv and argv[0] == "_drive":
        port, rate, duration, conns, path, expect = argv[1:7]
        with open(path) as f:
            requests = [r.encode("latin-1") for r in json.load(f)]
        result = asyncio.run(_drive(int(port), float(rate), float(duration), int(conns),
                                    requests, expect.encode()))  # fmt: skip
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
    parser.add_argument("--parts", default="candidates,links,webhooks")
    parser.add_argument("--link-rate", type=float, default=1000)
    parser.add_argument("--batches", type=int, default=100, help="POST /v1/deliveries of 500")
    parser.add_argument("--notifications", type=int, default=10_000, help="signed SES events")
    parser.add_argument("--webhook-conns", type=int, default=16, help="as SNS, in parallel")
    args = parser.parse_args(argv)
    parts = set(args.parts.split(","))
    sys.path.insert(0, str(ROOT))
    os.environ["CEAP_SIGNING_KEY"] = SIGNING_KEY  # the links this process signs, the server checks
    db = Path(args.db)
    load(db, args.rows, args.customers)
    keys = load_outbox(db, LINK_ROWS)
    stub, extra = None, {}
    if "webhooks" in parts:
        from tests.serving.sns_stub import HOSTS, SnsStub

        stub = SnsStub(Path(tempfile.mkdtemp(prefix="ceap-bench-sns-")))
        extra = {"CEAP_SNS_CERT_HOSTS": HOSTS, "SSL_CERT_FILE": str(stub.ca_file)}
    port = free_port()
    server = start_server(db, port, args.workers, **extra)
    print(f"{args.workers} uvicorn worker(s), store {db}")
    answered = None
    try:
        if "candidates" in parts:
            bench_candidates(port, args)
        if "links" in parts:
            answered = bench_links(port, args, keys)
        if stub is not None:
            bench_webhooks(port, args, keys, stub, db)
    finally:
        stop_server(server)
        if stub is not None:
            stub.close()
    if answered is not None:
        count_clicks(db, answered)
    return 0


if __name__ == "__main__":
    sys.exit(main())
