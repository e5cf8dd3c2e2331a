"""``pubsub``: a Google Cloud Pub/Sub subscription (or topic) as a streaming source.

``read_events()`` is Beam's own ``ReadFromPubSub(with_attributes=True, id_label=...)``
-> micro-batches (``BatchElements``) -> one Arrow batch of JSON events each, every row with
its position in ``ORIGIN_COLUMN``: a stable 63-bit hash of the message's id attribute
(``id_attribute``), else its Pub/Sub message id, else its bytes. A message that is not a
JSON object becomes a dead letter with its text, never a crash.

Runners: ``ReadFromPubSub`` is a native source that Dataflow implements (exactly-once
delivery with ``id_label``, acks after a bundle commits). With it the graph is *not* one
fused stage on the local in-process FnApiRunner (which has no Pub/Sub source): run it with
``--runner DataflowRunner --project P --region R --temp_location gs://...`` (or Beam's
Python ``DirectRunner`` with ``--streaming`` for a trial). Restarts do not use the outcome
ledger's read positions: Pub/Sub redelivers unacked messages, and the ledger (keyed by the
hashed id) keeps their first outcome. Needs the ``gcp`` extra: ``pip install 'ceap[gcp]'``.
"""

from __future__ import annotations

import hashlib
from typing import Any

import apache_beam as beam
from pydantic import BaseModel, ConfigDict, Field, ValidationInfo, field_validator, model_validator

from ceap.errors import ConnectorError
from ceap.plugins import connectors
from connectors.base import Connector
from connectors.events import EventBatches, stable_position

GCP_EXTRA = "pip install 'ceap[gcp]'"


class PubSubOptions(BaseModel):
    model_config = ConfigDict(extra="forbid")
    subscription: str | None = None
    """``projects/<project>/subscriptions/<name>`` (preferred: survives restarts)."""
    topic: str | None = None
    """``projects/<project>/topics/<name>``: a temporary subscription, lost on restart."""
    id_attribute: str | None = None
    """Attribute holding the publisher's unique id: Dataflow drops redeliveries by it, and
    it is the event's identity in the outcome ledger."""
    timestamp_attribute: str | None = None
    """Attribute holding the event time (RFC 3339 or ms since epoch); else publish time."""
    max_batch: int = Field(default=1000, ge=1)
    """Most messages per micro-batch."""

    @field_validator("subscription", "topic")
    @classmethod
    def _beam_accepts(cls, value: str | None, info: ValidationInfo) -> str | None:
        # Beam's own parsers, so a name it would refuse fails at config load.
        from apache_beam.io.gcp import pubsub

        if value is not None:
            parse = (
                pubsub.parse_subscription
                if info.field_name == "subscription"
                else pubsub.parse_topic
            )
            parse(value)
        return value

    @model_validator(mode="after")
    def _exactly_one_source(self) -> PubSubOptions:
        if (self.subscription is None) == (self.topic is None):
            raise ValueError("set exactly one of `subscription` or `topic`")
        return self


def require_pubsub() -> None:
    """Raises a ConnectorError naming the extra when the Pub/Sub client is missing."""
    try:
        import google.cloud.pubsub  # noqa: F401
    except ImportError as exc:
        raise ConnectorError(
            f"the pubsub connector needs the Google Cloud Pub/Sub client: {GCP_EXTRA} ({exc})"
        ) from None


def message_position(message: Any, id_attribute: str | None) -> tuple[int, bytes]:
    """A ``PubsubMessage`` as (its stable position, its data)."""
    attributes = message.attributes or {}
    identity = (
        (attributes.get(id_attribute) if id_attribute else None)
        or message.message_id
        or hashlib.sha256(message.data or b"").hexdigest()
    )
    return stable_position("pubsub", identity), message.data or b""


@connectors.register("pubsub")
class PubSubConnector(Connector):
    Options = PubSubOptions

    def read_events(self, start: int = 0, on_batch=None, context=None) -> beam.PTransform:
        """PBegin -> unbounded PCollection[RecordBatch]. ``start`` and ``on_batch`` are not
        used: Pub/Sub tracks what was acknowledged, not the ledger's positions.

        Raises:
          ConnectorError: the gcp extra is not installed (checked here, at graph build).
        """
        require_pubsub()
        return _ReadPubSub(self.options)


class _ReadPubSub(beam.PTransform):
    def __init__(self, options: PubSubOptions) -> None:
        super().__init__()
        self._options = options

    def expand(self, pbegin):
        from apache_beam.io.gcp.pubsub import ReadFromPubSub

        o = self._options
        return (
            pbegin
            | "Read"
            >> ReadFromPubSub(
                topic=o.topic,
                subscription=o.subscription,
                id_label=o.id_attribute,
                with_attributes=True,
                timestamp_attribute=o.timestamp_attribute,
            )
            | "Position" >> beam.Map(message_position, o.id_attribute)
            | "Events" >> EventBatches(f"pubsub:{o.subscription or o.topic}", o.max_batch)
        )
