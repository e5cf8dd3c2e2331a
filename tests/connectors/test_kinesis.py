"""The Kinesis source against moto's Kinesis in server mode, on loopback: the streaming
pipeline reads every shard, records one outcome per record, checkpoints each shard and
resumes from the checkpoints on restart (nothing read twice); a closed parent shard is
read to its end before its children."""

from __future__ import annotations

import inspect
import json
import os
import signal
import sqlite3
import sys
import threading
import time
import uuid
from datetime import timedelta

import boto3
import pytest

from ceap import stopping
from ceap.context import RunContext
from configs.schema import parse_program, read_yaml
from connectors import kinesis_api, kinesis_reader
from connectors.events import stable_position
from connectors.kinesis import KinesisConnector, ListShards, checkpoint_key
from pipelines.streaming import build_streaming_pipeline
from stores.checkpoints import Checkpoints

REGION = "us-east-1"

PROGRAM = """
program: kin
action: rate
subject_type: video
fields: {customer_id: customer_id, subject_id: video_id, event_time: completed_at}
scoring: {models: [{id: m, type: column, options: {column: engagement}}]}
events:
  type: kinesis
  options: {stream: STREAM, region: us-east-1, endpoint_url: ENDPOINT, poll_seconds: 0.05}
"""


@pytest.fixture
def kinesis(moto_endpoint):
    return boto3.client("kinesis", endpoint_url=moto_endpoint, region_name=REGION)


@pytest.fixture
def stream(kinesis) -> str:
    name = f"events-{uuid.uuid4().hex[:8]}"
    kinesis.create_stream(StreamName=name, ShardCount=2)
    kinesis.get_waiter("stream_exists").wait(StreamName=name, WaiterConfig={"Delay": 0.1})
    return name


def _event(i: int) -> bytes:
    when = (RunContext.utcnow() - timedelta(minutes=5)).isoformat()
    event = {"customer_id": f"c{i}", "video_id": f"v{i}", "completed_at": when, "engagement": 0.5}
    return json.dumps(event).encode()


def _put(kinesis, stream: str, payloads: list[bytes]) -> dict[int, str]:
    """Puts the payloads alternately on the stream's shards; position -> shard id."""
    shards = kinesis.list_shards(StreamName=stream)["Shards"]
    hash_keys = [s["HashKeyRange"]["StartingHashKey"] for s in shards if _open(s)]
    positions = {}
    for i, data in enumerate(payloads):
        put = kinesis.put_record(
            StreamName=stream,
            Data=data,
            PartitionKey=str(i),
            ExplicitHashKey=hash_keys[i % len(hash_keys)],
        )
        positions[stable_position(put["ShardId"], put["SequenceNumber"])] = put["ShardId"]
    return positions


def _open(shard: dict) -> bool:
    return "EndingSequenceNumber" not in shard["SequenceNumberRange"]


def _run_until(program, ctx, db: str, expected: int, timeout: float = 90.0) -> None:
    """Runs the streaming pipeline in a thread until the ledger has ``expected`` outcomes,
    then stops it gracefully and waits for it to end."""
    stopping.reset()
    errors: list[BaseException] = []

    def run() -> None:
        try:
            build_streaming_pipeline(program, ctx).run().wait_until_finish()
        except BaseException as exc:  # noqa: BLE001 - re-raised in the test thread
            errors.append(exc)

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    deadline = time.monotonic() + timeout
    try:
        while _count(db, "event_outcomes") < expected and not errors:
            assert time.monotonic() < deadline, f"only {_count(db, 'event_outcomes')} outcomes"
            time.sleep(0.1)
    finally:
        stopping.request()
        thread.join(60)
    stopping.reset()
    assert not thread.is_alive(), "the pipeline did not drain after the stop request"
    if errors:
        raise errors[0]


def _count(db: str, table: str) -> int:
    try:
        with sqlite3.connect(db) as conn:
            return conn.execute(f"SELECT count(*) FROM {table}").fetchone()[0]  # noqa: S608
    except sqlite3.OperationalError:  # the pipeline has not created the tables yet
        return 0


def _rows(db: str, sql: str) -> list[tuple]:
    with sqlite3.connect(db) as conn:
        return conn.execute(sql).fetchall()


def _program(stream: str, endpoint: str):
    text = PROGRAM.replace("STREAM", stream).replace("ENDPOINT", endpoint)
    return parse_program(read_yaml(text))


def test_reads_every_shard_once_and_resumes_from_checkpoints(
    tmp_path, kinesis, stream, moto_endpoint
):
    db = str(tmp_path / "ceap.db")
    program = _program(stream, moto_endpoint)
    ctx = RunContext(program="kin", now=RunContext.utcnow(), store="sqlite:///" + db,
                     streaming=True)  # fmt: skip
    first = _put(kinesis, stream, [_event(i) for i in range(6)] + [b"not json {"])
    bad = list(first)[-1]
    assert len(set(first.values())) == 2  # both shards have records

    _run_until(program, ctx, db, expected=len(first))

    outcomes = _rows(db, "SELECT position, outcome FROM event_outcomes")
    assert sorted(p for p, _ in outcomes) == sorted(first)  # exactly one outcome per record
    assert dict(outcomes)[bad] == "dead_letter"
    assert {o for p, o in outcomes if p != bad} == {"candidate"}
    assert sorted(_rows(db, "SELECT customer_id FROM candidates")) == [(f"c{i}",) for i in range(6)]
    [(stage, reason, origin)] = _rows(db, "SELECT stage, reason, origin FROM dead_letters")
    assert stage == "candidates" and reason.startswith("not a JSON object")
    assert origin == f"{checkpoint_key(stream, first[bad])}#{bad}"
    with Checkpoints("sqlite:///" + db) as checkpoints:
        saved = checkpoints.checkpoints("kin")
    assert set(saved) == {checkpoint_key(stream, s) for s in set(first.values())}

    # Forget the first run's candidates: if the restart read those records again, their
    # candidates would come back.
    with sqlite3.connect(db) as conn:
        conn.execute("DELETE FROM candidates")
    second = _put(kinesis, stream, [_event(i) for i in range(6, 10)])

    _run_until(program, ctx, db, expected=len(first) + len(second))

    positions = [p for (p,) in _rows(db, "SELECT position FROM event_outcomes")]
    assert sorted(positions) == sorted([*first, *second])
    assert sorted(_rows(db, "SELECT customer_id FROM candidates")) == [
        (f"c{i}",) for i in range(6, 10)
    ]
    with Checkpoints("sqlite:///" + db) as checkpoints:
        resumed = checkpoints.checkpoints("kin")
    assert all(int(resumed[k]) > int(v) for k, v in saved.items())


class FakeKinesis:
    """A closed parent shard split into two children, as Kinesis serves them (moto keeps
    writing to a split parent). The parent's first read is empty (a sparse shard) and a
    child's first read is throttled."""

    def __init__(self, stream: str) -> None:
        self.stream = stream
        self.records = {"shardId-0": [_event(i) for i in range(3)],
                        "shardId-1": [_event(3), _event(4)], "shardId-2": [_event(5)]}  # fmt: skip
        self.calls: dict[str, int] = {}

    def list_shards(self, **request) -> dict:
        assert request == {"StreamName": self.stream}

        def shard(i, **extra):
            seqs = {"StartingSequenceNumber": "1"}
            return {"ShardId": f"shardId-{i}", "SequenceNumberRange": seqs, **extra}

        closed = {"StartingSequenceNumber": "1", "EndingSequenceNumber": "3"}
        return {"Shards": [shard(2, ParentShardId="shardId-0"), shard(1, ParentShardId="shardId-0"),
                           {"ShardId": "shardId-0", "SequenceNumberRange": closed}]}  # fmt: skip

    def get_shard_iterator(self, **request) -> dict:
        after = request["ShardIteratorType"] == "AFTER_SEQUENCE_NUMBER"
        start = int(request["StartingSequenceNumber"]) if after else 0
        return {"ShardIterator": f"{request['ShardId']}|{start}"}

    def get_records(self, **request) -> dict:
        from botocore.exceptions import ClientError

        iterator, limit = request["ShardIterator"], request["Limit"]
        shard, start = iterator.split("|")
        call = self.calls[shard] = self.calls.get(shard, 0) + 1
        if shard == "shardId-1" and call == 1:
            error = {"Error": {"Code": "ProvisionedThroughputExceededException", "Message": "slow"}}
            raise ClientError(error, "GetRecords")
        if shard == "shardId-0" and call == 1:
            return {"Records": [], "NextShardIterator": iterator, "MillisBehindLatest": 0}
        data = self.records[shard][int(start) : int(start) + limit]
        end = int(start) + len(data)
        records = [
            {"SequenceNumber": str(int(start) + i + 1), "Data": d} for i, d in enumerate(data)
        ]
        closed = shard == "shardId-0" and end == len(self.records[shard])
        following = None if closed else f"{shard}|{end}"
        return {"Records": records, "NextShardIterator": following, "MillisBehindLatest": 0}


def test_closed_parent_is_read_before_its_children(tmp_path, monkeypatch):
    fake = FakeKinesis("split")
    monkeypatch.setattr(kinesis_api, "kinesis_client", lambda options: fake)
    db = str(tmp_path / "ceap.db")
    ctx = RunContext(program="kin", now=RunContext.utcnow(), store="sqlite:///" + db,
                     streaming=True)  # fmt: skip
    _run_until(_program("split", "http://unused"), ctx, db, expected=6)

    order = dict(_rows(db, "SELECT position, rowid FROM event_outcomes"))
    parent = [stable_position("shardId-0", str(i)) for i in (1, 2, 3)]
    children = [stable_position("shardId-1", "1"), stable_position("shardId-1", "2"),
                stable_position("shardId-2", "1")]  # fmt: skip
    assert sorted(order) == sorted(parent + children)
    assert max(order[p] for p in parent) < min(order[p] for p in children)
    assert fake.calls["shardId-1"] >= 2  # throttled once, then read
    with Checkpoints("sqlite:///" + db) as checkpoints:
        saved = checkpoints.checkpoints("kin")
    assert saved == {"kinesis:split:shardId-0": "3", "kinesis:split:shardId-0:end": "3",
                     "kinesis:split:shardId-1": "2", "kinesis:split:shardId-2": "1"}  # fmt: skip

    # A restart skips the finished parent; its children resume after their checkpoints.
    lister = ListShards(KinesisConnector({"stream": "split"}).options, "kin", "sqlite:///" + db)
    lister.setup()
    try:
        shards = {s.shard_id: s for s in lister.process(None)}
    finally:
        lister.teardown()
    assert {k: (s.start, s.parents) for k, s in shards.items()} == {
        "shardId-1": (3, ()), "shardId-2": (2, ())
    }  # fmt: skip


class CountingClient:
    """The real Kinesis client, counting the reader's GetRecords rounds."""

    def __init__(self, client, rounds: list[int]) -> None:
        self._client, self._rounds = client, rounds

    def __getattr__(self, name: str):
        return getattr(self._client, name)

    def get_records(self, **request) -> dict:
        self._rounds[0] += 1
        return self._client.get_records(**request)


ROUNDS = 400
"""GetRecords rounds of the long-lived reader; each ends a bundle, and the run's stack is
given fewer frames than that (below) where Python's default gives 1,000."""


@pytest.mark.integration
def test_a_long_lived_reader_with_many_get_records_rounds_stops_cleanly(
    tmp_path, kinesis, moto_endpoint, monkeypatch
):
    """``run.py --mode streaming`` reads a shard for hundreds of rounds, then SIGINT: exit 0,
    a ``runs`` row, every event accounted. Each round deferred and so ended a bundle; Beam's
    FnApiRunner kept each bundle's metrics as a generator wrapping the previous one, and
    reading them at the stop recursed once per bundle: ``RecursionError``, exit 1, no row
    (issue 16: runs of 4 minutes and more, at 1-5 bundles a second)."""
    import run

    name = f"long-{uuid.uuid4().hex[:8]}"
    kinesis.create_stream(StreamName=name, ShardCount=1)
    kinesis.get_waiter("stream_exists").wait(StreamName=name, WaiterConfig={"Delay": 0.1})
    configs, db = tmp_path / "configs", str(tmp_path / "ceap.db")
    configs.mkdir()
    text = PROGRAM.replace("STREAM", name).replace("ENDPOINT", moto_endpoint)
    (configs / "kin.yaml").write_text(text.replace("poll_seconds: 0.05", "poll_seconds: 0.001"))
    monkeypatch.setenv("CEAP_HOME", str(tmp_path / "home"))
    # Hundreds of rounds in seconds: unpaced (Kinesis itself serves 5 a second per shard).
    monkeypatch.setattr(kinesis_reader, "MIN_READ_SECONDS", 0.001)
    rounds = [0]
    real = kinesis_api.kinesis_client
    monkeypatch.setattr(kinesis_api, "kinesis_client", lambda o: CountingClient(real(o), rounds))
    sent = list(_put(kinesis, name, [_event(i) for i in range(3)]))

    ended = threading.Event()

    def feed_then_interrupt() -> None:  # events keep coming mid-run; then Ctrl-C
        deadline = time.monotonic() + 60
        while rounds[0] < ROUNDS // 2 and time.monotonic() < deadline and not ended.is_set():
            time.sleep(0.05)
        sent.extend(_put(kinesis, name, [_event(i) for i in range(3, 5)]))
        while (rounds[0] < ROUNDS or _count(db, "event_outcomes") < 5) and (
            time.monotonic() < deadline and not ended.is_set()
        ):
            time.sleep(0.05)
        if not ended.is_set():  # run.py's handler (installed until ``ended``): a graceful stop
            os.kill(os.getpid(), signal.SIGINT)

    handlers = {s: signal.getsignal(s) for s in (signal.SIGINT, signal.SIGTERM)}
    limit = sys.getrecursionlimit()
    interrupter = threading.Thread(target=feed_then_interrupt, daemon=True)
    # The run needs under 150 frames of stack (measured); the unfixed stop, one per bundle.
    sys.setrecursionlimit(len(inspect.stack()) + ROUNDS - 100)
    try:
        interrupter.start()
        argv = ["--program", "kin", "--mode", "streaming", "--config-dir", str(configs)]
        code = run.main([*argv, "--store", "sqlite:///" + db])
    finally:
        sys.setrecursionlimit(limit)
        ended.set()
        interrupter.join(60)
        for sig, handler in handlers.items():
            signal.signal(sig, handler)
        stopping.reset()

    assert rounds[0] >= ROUNDS
    assert code == 0
    [(mode, status, funnel)] = _rows(db, "SELECT mode, status, funnel FROM runs")
    assert (mode, status) == ("streaming", "ok") and json.loads(funnel)
    assert sorted(p for (p,) in _rows(db, "SELECT position FROM event_outcomes")) == sorted(sent)


def test_options_are_validated():
    with pytest.raises(ValueError, match="max_records"):
        KinesisConnector({"stream": "s", "max_records": 10_001})
    with pytest.raises(ValueError, match="iterator"):
        KinesisConnector({"stream": "s", "iterator": "AT_TIMESTAMP"})
    with pytest.raises(ValueError, match="extra"):
        KinesisConnector({"stream": "s", "shard": "x"})


def test_positions_are_stable_63_bit_integers():
    seq = "49590338271490256608559692538361571095921575989136588898"
    a = stable_position("shardId-000000000000", seq)
    assert a == stable_position("shardId-000000000000", seq)
    assert 0 <= a < 1 << 63
    assert a != stable_position("shardId-000000000001", seq)
