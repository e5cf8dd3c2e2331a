"""Pub/Sub and Kafka sources: options validation, and clear graph-build errors when what
they run on is missing (the gcp extra; a Java expansion service). Neither runs on the
local runner, so their reads are not run here; their message -> batch step is."""

from __future__ import annotations

import socket
import sys
import time
import types
from datetime import UTC, datetime

import apache_beam as beam
import pyarrow as pa
import pytest
from apache_beam.io.gcp.pubsub import PubsubMessage
from apache_beam.testing.test_pipeline import TestPipeline
from apache_beam.testing.util import assert_that, equal_to

import connectors.kafka
from ceap.context import RunContext
from ceap.errors import ConnectorError
from configs.schema import parse_program, read_yaml
from connectors.base import ERROR_COLUMN, ORIGIN_COLUMN
from connectors.events import EventBatches, stable_position
from connectors.kafka import KafkaConnector, record_position
from connectors.pubsub import PubSubConnector, message_position
from pipelines.streaming import build_streaming_pipeline

SUBSCRIPTION = "projects/my-project/subscriptions/video-events"

PROGRAM = """
program: mq
action: rate
subject_type: video
fields: {customer_id: customer_id, subject_id: video_id}
scoring: {models: [{id: m, type: column, options: {column: engagement}}]}
events: EVENTS
"""


def _program(events: str):
    return parse_program(read_yaml(PROGRAM.replace("EVENTS", events)))


def _ctx(tmp_path) -> RunContext:
    return RunContext(program="mq", now=datetime.now(UTC), store=f"sqlite:///{tmp_path}/ceap.db",
                      streaming=True)  # fmt: skip


@pytest.fixture
def closed_port() -> int:
    """A loopback port nothing listens on (bound, then released)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


# -- pubsub ------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("options", "error"),
    [
        ({}, "exactly one of `subscription` or `topic`"),
        (
            {"subscription": SUBSCRIPTION, "topic": "projects/my-project/topics/t"},
            "exactly one",
        ),
        ({"subscription": "video-events"}, "subscription"),
        ({"topic": "projects/p/topics/t"}, "Invalid PubSub project name"),
        ({"subscription": SUBSCRIPTION, "id_label": "x"}, "Extra inputs are not permitted"),
    ],
)
def test_pubsub_options_are_validated(options, error):
    with pytest.raises(ValueError, match=error):
        PubSubConnector(options)


def test_pubsub_without_the_gcp_extra_fails_at_graph_build(tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "google.cloud.pubsub", None)  # import -> ImportError
    program = _program(f"{{type: pubsub, options: {{subscription: {SUBSCRIPTION}}}}}")
    with pytest.raises(ConnectorError, match=r"pip install 'ceap\[gcp\]'"):
        build_streaming_pipeline(program, _ctx(tmp_path))


def test_pubsub_graph_reads_then_batches(monkeypatch):
    monkeypatch.setitem(sys.modules, "google.cloud.pubsub", types.ModuleType("pubsub"))
    source = PubSubConnector({"subscription": SUBSCRIPTION, "id_attribute": "event_id"})
    p = beam.Pipeline()
    _ = p | "ReadEvents[pubsub]" >> source.read_events()
    [read] = p.transforms_stack[0].parts
    labels = [t.full_label for t in read.parts]
    assert labels == ["ReadEvents[pubsub]/Read", "ReadEvents[pubsub]/Position",
                      "ReadEvents[pubsub]/Events"]  # fmt: skip
    pubsub_read = read.parts[0].transform
    assert pubsub_read.with_attributes and pubsub_read._source.id_label == "event_id"


def test_pubsub_positions_prefer_the_id_attribute():
    message = PubsubMessage(b'{"a": 1}', {"event_id": "e-1"}, message_id="m-1")
    assert message_position(message, "event_id") == (stable_position("pubsub", "e-1"), b'{"a": 1}')
    assert message_position(message, None)[0] == stable_position("pubsub", "m-1")
    assert message_position(message, "missing")[0] == stable_position("pubsub", "m-1")


def test_messages_become_batches_with_positions_and_errors():
    def summary(batch: pa.RecordBatch):  # however BatchElements grouped the messages
        def column(name: str) -> list:
            names = batch.schema.names
            return batch.column(name).to_pylist() if name in names else [None] * batch.num_rows

        errors = [e is not None for e in column(ERROR_COLUMN)]
        yield from zip(column(ORIGIN_COLUMN), column("customer_id"), errors, strict=True)

    with TestPipeline() as p:
        rows = (
            p
            | beam.Create([(7, b'{"customer_id": "c1"}'), (9, b"oops")])
            | EventBatches("test", max_batch=10)
            | beam.FlatMap(summary)
        )
        assert_that(rows, equal_to([(7, "c1", False), (9, None, True)]))


# -- kafka -------------------------------------------------------------------------------
KAFKA = {"bootstrap_servers": "broker:9092", "topics": ["views"]}


def test_kafka_options_are_validated():
    source = KafkaConnector({**KAFKA, "bootstrap_servers": ["b1:9092", "b2:9092"],
                             "topics": "views", "consumer_config": {"enable.auto.commit": False,
                             "group.id": "ceap", "max.poll.records": 500}})  # fmt: skip
    assert source.options.topics == ["views"]
    assert source.consumer_config() == {
        "bootstrap.servers": "b1:9092,b2:9092", "enable.auto.commit": "false",
        "group.id": "ceap", "max.poll.records": "500",
    }  # fmt: skip
    for bad, error in [
        ({"topics": []}, "topics"),
        ({"expansion_service": "localhost"}, "expected host:port"),
        ({"consumer_config": {"bootstrap.servers": "x:1"}}, "bootstrap_servers"),
        ({"brokers": "x"}, "Extra inputs"),
    ]:
        with pytest.raises(ValueError, match=error):
            KafkaConnector({**KAFKA, **bad})


def test_kafka_unreachable_expansion_service_fails_fast(tmp_path, closed_port):
    events = (f"{{type: kafka, options: {{bootstrap_servers: 'broker:9092', topics: [views], "
              f"expansion_service: '127.0.0.1:{closed_port}'}}}}")  # fmt: skip
    t0 = time.monotonic()
    with pytest.raises(ConnectorError, match="Java expansion service.*options.expansion_service"):
        build_streaming_pipeline(_program(events), _ctx(tmp_path))
    assert time.monotonic() - t0 < 10


def test_kafka_default_expansion_service_needs_java(monkeypatch):
    monkeypatch.setattr(connectors.kafka.shutil, "which", lambda name: None)
    with pytest.raises(ConnectorError, match="needs Java.*expansion service"):
        KafkaConnector(KAFKA).read_events()


def test_kafka_default_expansion_service_needs_its_jar(tmp_path, monkeypatch):
    from apache_beam.utils.subprocess_server import JavaJarServer

    monkeypatch.setattr(connectors.kafka.shutil, "which", lambda name: "/usr/bin/java")
    monkeypatch.setattr(JavaJarServer, "JAR_CACHE", str(tmp_path))
    monkeypatch.setattr(connectors.kafka, "_reachable", lambda host, port: False)
    with pytest.raises(ConnectorError, match=f"not in {tmp_path}.*cannot be reached"):
        KafkaConnector(KAFKA).read_events()


def test_kafka_positions_hash_topic_partition_offset():
    record = beam.Row(topic="views", partition=3, offset=41, key=None, value=b"{}")
    assert record_position(record) == (stable_position("kafka", "views", "3", "41"), b"{}")
