"""The soak bench's inputs: its self-contained program, its events, the two sources it
feeds (the embedded event log; Kinesis on a moto server it starts), and process figures
read from /proc (psutil is not a dependency).

The program needs no warehouse: no enrichment, one expression filter that keeps 8 events
in 10 (``watched_pct`` cycles through 0.05 .. 0.95, kept above 0.2), a column score and
one in_app channel, so every event ends as a candidate (with one outbox row) or as
``filtered``, and which one is known in advance.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
from datetime import UTC, datetime
from pathlib import Path

PROGRAM = "soak"
KEEP_ABOVE = 0.2
PROGRAM_YAML = """\
program: soak
action: rate
subject_type: video
events: {events}
fields: {{customer_id: customer_id, subject_id: video_id, event_time: completed_at}}
filters:
  - {{type: expression, options: {{keep: "watched_pct > {keep}"}}}}
scoring: {{models: [{{id: m, type: column, options: {{column: watched_pct}}}}]}}
channels: [{{type: in_app}}]
"""
CLK_TCK = os.sysconf("SC_CLK_TCK")


def write_program(configs: Path, events_block: str) -> None:
    configs.mkdir(parents=True, exist_ok=True)
    text = PROGRAM_YAML.format(events=events_block, keep=KEEP_ABOVE)
    (configs / f"{PROGRAM}.yaml").write_text(text)


def watched_pct(i: int) -> float:
    return round(0.05 + (i % 10) / 10, 2)


def passes(i: int) -> bool:
    """Whether event ``i`` passes the program's filter (8 in 10 do)."""
    return watched_pct(i) > KEEP_ABOVE


def subject(i: int) -> str:
    return f"v{i:09d}"


def index_of(subject_id: str | None) -> int | None:
    """The event index a subject id stands for; None for one this bench never sent."""
    if not subject_id or subject_id[0] != "v" or not subject_id[1:].isdigit():
        return None
    return int(subject_id[1:])


def make_events(first: int, count: int) -> list[dict]:
    """Events ``first`` .. ``first + count - 1``: a unique (customer, subject) key each, so
    each is one candidate at most; event time is now (the moment of sending)."""
    at = datetime.now(UTC).isoformat()
    return [
        {"customer_id": f"c{i % 997}", "video_id": subject(i), "completed_at": at,
         "watched_pct": watched_pct(i)}
        for i in range(first, first + count)
    ]  # fmt: skip


class EventLogFeed:
    """The embedded event log under the work directory; positions are log offsets."""

    name = "event_log"
    server_pid: int | None = None

    def __init__(self, work: Path) -> None:
        from connectors.event_log import EventLog

        self.path = work / "log"
        self._log = EventLog(self.path)

    def events_block(self) -> str:
        return f"{{type: event_log, options: {{path: {self.path}}}, delay: 10m}}"

    def env(self) -> dict[str, str]:
        return {}

    def send(self, events: list[dict]) -> list[int]:
        """Appends the events (one locked, fsynced write); returns their ledger positions."""
        return self._log.append(events)

    def close(self) -> None:
        pass


MOTO_SERVER = """
import logging, threading
from moto.kinesis import models as kinesis
from moto.server import ThreadedMotoServer

# moto's shards scan every record per GetRecords and copy every key per PutRecord: O(n) in
# the records a stream ever held, so a 30-minute stream (360k records) slowed moto itself
# to minutes per read. Its sequence numbers are consecutive ints: read and append in O(k).
_scan = kinesis.Shard.get_records
def get_records(self, last_sequence_id, limit):
    records, last = self.records, int(last_sequence_id)
    if not records or last >= next(reversed(records)):
        return [], last, 0  # caught up: the usual poll
    if last + 1 not in records:
        return _scan(self, last_sequence_id, limit)
    out = []
    while last + 1 in records and (limit is None or len(out) < limit):
        last += 1
        out.append(records[last])
    newest = records[next(reversed(records))]
    return out, last, int((newest.created_at - out[-1].created_at).total_seconds() * 1000)
kinesis.Shard.get_records = get_records
kinesis.Shard.get_max_sequence_number = lambda self: next(reversed(self.records), 0)
kinesis.Shard.get_min_sequence_number = lambda self: next(iter(self.records), 0)
logging.getLogger("werkzeug").setLevel(logging.ERROR)  # no line per request
server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
server.start()
app, lock = server._server.app, threading.Lock()
def one_at_a_time(environ, start_response):
    with lock:
        return list(app(environ, start_response))
server._server.app = one_at_a_time
print("%s:%s" % server.get_host_and_port(), flush=True)
threading.Event().wait()
"""
FAKE_AWS = {
    "AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing",
    "AWS_DEFAULT_REGION": "us-east-1", "AWS_CONFIG_FILE": "/dev/null",
    "AWS_SHARED_CREDENTIALS_FILE": "/dev/null",
}  # fmt: skip


class KinesisFeed:
    """A Kinesis stream on a moto server in its own process (its own interpreter, so the
    server does not share this bench's GIL), on a free loopback port. The server applies
    one request at a time, as tests/conftest.py's does: moto's GetRecords iterates a
    shard's records while a concurrent PutRecords adds to them ("OrderedDict mutated during
    iteration", a 500 that botocore retries after a backoff: a latency spike of moto's)."""

    name = "kinesis"
    stream = "ceap-soak"

    def __init__(self, work: Path, shards: int = 2) -> None:
        import boto3

        env = {k: v for k, v in os.environ.items() if not k.startswith("AWS_")}
        with open(work / "moto.err", "w") as err:
            self._server = subprocess.Popen(
                [sys.executable, "-c", MOTO_SERVER], env={**env, **FAKE_AWS},
                stdout=subprocess.PIPE, stderr=err, text=True,
            )  # fmt: skip
        self.server_pid = self._server.pid
        address = self._server.stdout.readline().strip()
        if not address:
            raise SystemExit(f"moto did not start: {(work / 'moto.err').read_text()[-2000:]}")
        self.endpoint = f"http://{address}"
        self._client = boto3.client(
            "kinesis", endpoint_url=self.endpoint, region_name="us-east-1",
            aws_access_key_id="testing", aws_secret_access_key="testing",
        )  # fmt: skip
        self._client.create_stream(StreamName=self.stream, ShardCount=shards)
        waiter = self._client.get_waiter("stream_exists")
        waiter.wait(StreamName=self.stream, WaiterConfig={"Delay": 0.1})

    def events_block(self) -> str:
        return (
            f"{{type: kinesis, options: {{stream: {self.stream}, region: us-east-1, "
            f"endpoint_url: '{self.endpoint}', poll_seconds: 0.05}}, delay: 10m}}"
        )

    def env(self) -> dict[str, str]:
        return FAKE_AWS

    def send(self, events: list[dict]) -> list[int]:
        """PutRecords (partition key: the customer), retrying records Kinesis refused;
        returns their ledger positions (``stable_position(shard, sequence number)``)."""
        import json

        from connectors.events import stable_position

        positions: list[int | None] = [None] * len(events)
        todo = list(range(len(events)))
        for attempt in range(20):
            for start in range(0, len(todo), 500):
                chunk = todo[start : start + 500]
                records = [
                    {"Data": json.dumps(events[i]).encode(),
                     "PartitionKey": events[i]["customer_id"]}
                    for i in chunk
                ]  # fmt: skip
                out = self._client.put_records(StreamName=self.stream, Records=records)
                for i, r in zip(chunk, out["Records"], strict=True):
                    if "SequenceNumber" in r:
                        positions[i] = stable_position(r["ShardId"], r["SequenceNumber"])
            todo = [i for i in todo if positions[i] is None]
            if not todo:
                return positions  # type: ignore[return-value]
            time.sleep(0.05 * (attempt + 1))
        raise SystemExit(f"kinesis refused {len(todo)} records 20 times")

    def close(self) -> None:
        self._server.terminate()
        try:
            self._server.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self._server.kill()


def descendants(pid: int) -> list[int]:
    """``pid`` and its child processes, recursively (a runner may start workers)."""
    found, todo = [], [pid]
    while todo:
        p = todo.pop()
        found.append(p)
        for children in Path(f"/proc/{p}/task").glob("*/children"):
            try:
                todo += [int(c) for c in children.read_text().split()]
            except OSError:
                continue
    return found


def rss_mb(pid: int) -> float:
    """Resident memory of ``pid`` and its children (VmRSS), in MiB; 0 once it is gone."""
    total = 0
    for p in descendants(pid):
        try:
            for line in Path(f"/proc/{p}/status").read_text().splitlines():
                if line.startswith("VmRSS:"):
                    total += int(line.split()[1])
        except OSError:
            continue
    return total / 1024


def cpu_seconds(pid: int | None) -> float:
    """User + system CPU time of ``pid`` and its children so far, in seconds."""
    if pid is None:
        return 0.0
    total = 0
    for p in descendants(pid):
        try:
            fields = Path(f"/proc/{p}/stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        total += int(fields[11]) + int(fields[12])  # utime, stime (fields 14, 15)
    return total / CLK_TCK
