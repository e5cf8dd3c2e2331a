"""``kafka``: Apache Kafka topics as a streaming source, through Beam's ``ReadFromKafka``.

``ReadFromKafka`` is a cross-language transform: Beam's Java ``KafkaIO``, expanded into
the Python graph by a Java *expansion service* when the graph is built, and run by a
portable runner. ``read_events()`` is ``ReadFromKafka(with_metadata=True)`` -> JSON values
-> micro-batches, every row with its position in ``ORIGIN_COLUMN``: a stable 63-bit hash
of (topic, partition, offset). A value that is not a JSON object becomes a dead letter.

Before the graph is built the expansion service is checked, so a missing one fails at
once with what to do rather than hanging: ``options.expansion_service`` (``host:port``)
must accept a TCP connection within 3 s; without it Beam starts its own from the jar
``beam-sdks-java-io-expansion-service-<version>.jar`` (downloaded from Maven Central into
``~/.apache_beam/cache/jars`` on first use), which needs ``java`` and that jar or the
network.

Production setup:

- Expansion service: ``java -jar beam-sdks-java-io-expansion-service-2.77.0.jar 8097``
  (the jar matching the installed Beam), then ``options: {expansion_service: localhost:8097}``;
  or pre-stage the jar in ``~/.apache_beam/cache/jars`` on the machine that builds the job.
- Flink: ``--runner FlinkRunner --flink_master host:8081 --environment_type DOCKER``
  (or ``EXTERNAL`` with a Python SDK worker pool); the Java part runs in Flink's JVM.
- Dataflow: ``--runner DataflowRunner --project P --region R --temp_location gs://...``
  (Runner v2, the default, runs cross-language transforms).
- Restarts: give ``consumer_config`` a ``group.id``: offsets are then committed when a
  bundle is finalized, and a restarted job resumes there. Replays after a crash are
  harmless: the outcome ledger keeps the first outcome of each (topic, partition, offset).

The local in-process FnApiRunner (the default with no ``--runner``) cannot run Java
transforms: this source is for Flink and Dataflow.
"""

from __future__ import annotations

import os
import shutil
import socket
from typing import Any
from urllib.parse import urlparse

import apache_beam as beam
from pydantic import BaseModel, ConfigDict, Field, field_validator

from ceap.errors import ConnectorError
from ceap.plugins import connectors
from connectors.base import Connector
from connectors.events import EventBatches, stable_position

EXPANSION_JAR_TARGET = "sdks:java:io:expansion-service:shadowJar"
CONNECT_TIMEOUT_SECONDS = 3.0


class KafkaOptions(BaseModel):
    model_config = ConfigDict(extra="forbid")
    bootstrap_servers: str = Field(min_length=1)
    """``host:port[,host:port...]`` of the brokers (a YAML list is joined)."""
    topics: list[str] = Field(min_length=1)
    """The topics to read (one name is accepted as a list of one)."""
    consumer_config: dict[str, str] = Field(default_factory=dict)
    """Extra Kafka consumer properties (``group.id``, ``auto.offset.reset``, security ...)."""
    expansion_service: str | None = None
    """``host:port`` of a running Beam Java expansion service; else Beam starts one from
    its jar (needs ``java``; downloads the jar on first use)."""
    max_batch: int = Field(default=1000, ge=1)
    """Most records per micro-batch."""

    @field_validator("bootstrap_servers", mode="before")
    @classmethod
    def _join(cls, value: Any) -> Any:
        return ",".join(map(str, value)) if isinstance(value, list) else value

    @field_validator("topics", mode="before")
    @classmethod
    def _one_topic(cls, value: Any) -> Any:
        return [value] if isinstance(value, str) else value

    @field_validator("consumer_config", mode="before")
    @classmethod
    def _as_text(cls, value: Any) -> Any:
        if not isinstance(value, dict):
            return value
        if "bootstrap.servers" in value:
            raise ValueError("set the brokers with `bootstrap_servers`, not in consumer_config")
        # Kafka properties are text; YAML gives numbers and booleans (false -> "false").
        return {k: str(v).lower() if isinstance(v, bool) else str(v) for k, v in value.items()}

    @field_validator("expansion_service")
    @classmethod
    def _address(cls, value: str | None) -> str | None:
        if value is not None:
            _host_port(value)
        return value


def _host_port(address: str) -> tuple[str, int]:
    host, sep, port = address.rpartition(":")
    if not sep or not host or not port.isdigit():
        raise ValueError(f"expected host:port, got {address!r}")
    return host.strip("[]"), int(port)


def _reachable(host: str, port: int, timeout: float = CONNECT_TIMEOUT_SECONDS) -> bool:
    try:
        with socket.create_connection((host, port), timeout=timeout):
            return True
    except OSError:
        return False


_HOW = (
    "Kafka reads run through Beam's Java expansion service; start one with "
    "`java -jar beam-sdks-java-io-expansion-service-{version}.jar 8097` and set "
    "options.expansion_service: localhost:8097, or pass options.expansion_service"
)


def _how() -> str:
    return _HOW.format(version=beam.__version__)


def check_expansion_service(address: str | None) -> None:
    """Fails fast (ConnectorError) when the expansion service cannot be used.

    Args:
      address: ``host:port`` of a running service; None for Beam's default (a jar run
        with the local ``java``).
    """
    if address is not None:
        host, port = _host_port(address)
        if not _reachable(host, port):
            raise ConnectorError(
                f"kafka: no expansion service answers at {address} (TCP connect, "
                f"{CONNECT_TIMEOUT_SECONDS:.0f} s). {_how()}"
            )
        return
    from apache_beam.utils.subprocess_server import JavaHelper, JavaJarServer

    java = JavaHelper.get_java()
    if not shutil.which(java):
        raise ConnectorError(
            f"kafka: Beam's default expansion service needs Java, and {java!r} is not found "
            f"(install a JRE 11+ or set JAVA_HOME). {_how()}"
        )
    try:
        jar = JavaJarServer.path_to_beam_jar(EXPANSION_JAR_TARGET)
    except RuntimeError as exc:  # a development build of Beam has no released jar
        raise ConnectorError(f"kafka: {exc}. {_how()}") from None
    cached = os.path.join(JavaJarServer.JAR_CACHE, os.path.basename(jar))
    if os.path.exists(jar) or os.path.exists(cached):
        return
    url = urlparse(jar)
    host, port = url.hostname or "", url.port or (443 if url.scheme == "https" else 80)
    if not _reachable(host, port):
        raise ConnectorError(
            f"kafka: Beam's default expansion service jar is not in {cached} and {host} "
            f"cannot be reached to download it from {jar}. Stage the jar there, or: {_how()}"
        )


def record_position(record: Any) -> tuple[int, bytes]:
    """A ``ReadFromKafka(with_metadata=True)`` row as (its stable position, its value)."""
    identity = (str(record.topic), str(record.partition), str(record.offset))
    return stable_position("kafka", *identity), record.value or b""


@connectors.register("kafka")
class KafkaConnector(Connector):
    Options = KafkaOptions

    def consumer_config(self) -> dict[str, str]:
        return {"bootstrap.servers": self.options.bootstrap_servers, **self.options.consumer_config}

    def read_events(self, start: int = 0, on_batch=None, context=None) -> beam.PTransform:
        """PBegin -> unbounded PCollection[RecordBatch]. ``start`` and ``on_batch`` are not
        used: Kafka's consumer group offsets say where a restart resumes.

        Raises:
          ConnectorError: the expansion service is unreachable, or Java / its jar is
            unavailable (checked here, at graph build, instead of hanging).
        """
        check_expansion_service(self.options.expansion_service)
        return _ReadKafka(self.consumer_config(), self.options)


class _ReadKafka(beam.PTransform):
    def __init__(self, consumer_config: dict[str, str], options: KafkaOptions) -> None:
        super().__init__()
        self._config = consumer_config
        self._options = options

    def expand(self, pbegin):
        from apache_beam.io.kafka import ReadFromKafka

        o = self._options
        return (
            pbegin
            | "Read"
            >> ReadFromKafka(
                consumer_config=self._config,
                topics=o.topics,
                with_metadata=True,
                commit_offset_in_finalize="group.id" in self._config,
                expansion_service=o.expansion_service,
            )
            | "Position" >> beam.Map(record_position)
            | "Events" >> EventBatches(f"kafka:{','.join(o.topics)}", o.max_batch)
        )
