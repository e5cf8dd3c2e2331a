"""Which Kinesis shards to read and where each starts: ``ListShards`` turns one impulse into
one ``Shard`` per shard still to read, from the stream's listing and the program's shard
checkpoints (``kinesis:<stream>:<shard>``, and ``...:end`` for a closed shard read to its
end). A child shard waits for its listed, unfinished parents, so a partition key's events
stay in order across a reshard."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import apache_beam as beam

from ceap.errors import ConnectorError
from connectors import kinesis_api
from connectors.kinesis_api import KinesisOptions


@dataclass(frozen=True)
class Shard:
    """One shard to read: the ``ReadShard`` element."""

    stream: str
    shard_id: str
    start: int = 0
    """The first sequence number not read yet; 0: start at ``iterator``."""
    iterator: str = "TRIM_HORIZON"
    parents: tuple[str, ...] = ()
    """Listed parent shards to finish first."""
    ending: int | None = None
    """A closed shard's last sequence number (at listing)."""

    @property
    def key(self) -> str:
        return checkpoint_key(self.stream, self.shard_id)


def checkpoint_key(stream: str, shard_id: str) -> str:
    return f"kinesis:{stream}:{shard_id}"


class Checkpointing:
    """Where the Kinesis DoFns find their client and the program's checkpoints (none
    without a run context). Mixed in before ``beam.DoFn``."""

    def __init__(self, options: KinesisOptions, program: str | None, store: str | None) -> None:
        super().__init__()
        self._options = options
        self._program = program
        self._store = store

    def setup(self) -> None:
        self._client = kinesis_api.kinesis_client(self._options)
        self._checkpoints = None
        if self._program is not None:
            from stores.checkpoints import Checkpoints

            self._checkpoints = Checkpoints(self._store)

    def teardown(self) -> None:
        if getattr(self, "_checkpoints", None) is not None:
            self._checkpoints.close()
            self._checkpoints = None


class ListShards(Checkpointing, beam.DoFn):
    """Impulse -> one ``Shard`` per shard still to read, with where to start it."""

    def process(self, _: Any):
        stream = self._options.stream
        shards = self._list()
        ids = {s["ShardId"] for s in shards}
        saved = (
            self._checkpoints.checkpoints(self._program, checkpoint_key(stream, ""))
            if self._checkpoints is not None
            else {}
        )
        finished = {i for i in ids if checkpoint_key(stream, i) + ":end" in saved}
        for s in shards:
            shard_id = s["ShardId"]
            if shard_id in finished:
                continue
            parents = [s.get("ParentShardId"), s.get("AdjacentParentShardId")]
            parents = [p for p in parents if p]
            last = saved.get(checkpoint_key(stream, shard_id))
            # A child of a shard this program read continues its records: from the start.
            read_parent = any(checkpoint_key(stream, p) in saved for p in parents)
            ending = s.get("SequenceNumberRange", {}).get("EndingSequenceNumber")
            yield Shard(
                stream=stream,
                shard_id=shard_id,
                start=int(last) + 1 if last else 0,
                iterator="TRIM_HORIZON" if read_parent else self._options.iterator,
                parents=tuple(p for p in parents if p in ids and p not in finished),
                ending=int(ending) if ending else None,
            )

    def _list(self) -> list[dict[str, Any]]:
        from botocore.exceptions import BotoCoreError, ClientError

        shards: list[dict[str, Any]] = []
        request: dict[str, Any] = {"StreamName": self._options.stream}
        try:
            while True:
                page = self._client.list_shards(**request)
                shards += page.get("Shards", [])
                if not page.get("NextToken"):
                    break
                request = {"NextToken": page["NextToken"]}  # not with StreamName
        except (BotoCoreError, ClientError) as exc:
            raise ConnectorError(
                f"kinesis: cannot list the shards of stream {self._options.stream!r}: {exc}"
            ) from exc
        if not shards:
            raise ConnectorError(f"kinesis: stream {self._options.stream!r} has no shards")
        return sorted(shards, key=lambda s: s["ShardId"])
