"""Stream checkpoints kept in a DynamoDB store: what ``stores.checkpoints.Checkpoints`` uses
for a ``dynamodb://`` spec, so that a reader on any worker resumes where another left off.

Table ``stream_checkpoints`` of the store: program / ``sk`` = the checkpoint's key
(``kinesis:<stream>:<shard>``), with ``value`` and ``updated_at``; one item per shard, as in
the Kinesis Client Library's lease table. Reads are strongly consistent.

A checkpoint never moves back (stores/checkpoints.py): a sequence number is written with an
UpdateItem conditioned on the stored one not being greater, so a reader that lost its
shard to another one (a bundle retried elsewhere, a stalled worker waking up) cannot rewind
it; the position of the reader that went further stands. DynamoDB compares strings, not
numbers of 129 digits: of two numbers written without leading zeros the longer is greater,
and of two as long the one greater as text. A value that is not such a number is written as
it comes.
"""

from __future__ import annotations

from contextlib import suppress
from typing import TYPE_CHECKING

from stores.dynamodb.codec import to_item, with_names

if TYPE_CHECKING:
    from stores.dynamodb.store import DynamoDBStore

_NOT_BEHIND = (
    "attribute_not_exists(#value) OR size(#value) < :length "
    "OR (size(#value) = :length AND #value <= :value)"
)


class DynamoDBCheckpoints:
    """Args:
    store: the DynamoDBStore whose client and table names are used (closed by ``close``).
    """

    def __init__(self, store: DynamoDBStore) -> None:
        self._store = store
        self.client = store.client
        self.errors = store.errors
        self._table = store.name("stream_checkpoints")

    def get_checkpoint(self, program: str, key: str) -> str | None:
        got = self.client.get_item(
            TableName=self._table, Key=to_item({"program": program, "sk": key}),
            ProjectionExpression="#value", ExpressionAttributeNames={"#value": "value"},
            ConsistentRead=True,
        )  # fmt: skip
        return got["Item"]["value"]["S"] if "Item" in got else None

    def set_checkpoint(
        self, program: str, key: str, value: str, updated_at: str, sequence: bool
    ) -> None:
        """Writes ``value``; a ``sequence`` number only over a smaller one (or none)."""
        request = {
            "TableName": self._table, "Key": to_item({"program": program, "sk": key}),
            "UpdateExpression": "SET #value = :value, #updated_at = :updated_at",
        }  # fmt: skip
        values = {"value": value, "updated_at": updated_at, "length": len(value)}
        if sequence:
            request["ConditionExpression"] = _NOT_BEHIND
        with suppress(self.errors.ConditionalCheckFailedException):  # a greater one stands
            self.client.update_item(**with_names(request, values))

    def checkpoints(self, program: str, prefix: str = "") -> dict[str, str]:
        """key -> value of the program's checkpoints whose key starts with ``prefix``."""
        condition = "#program = :program" + (" AND begins_with(#sk, :prefix)" if prefix else "")
        found = self._store.read(
            "query", "stream_checkpoints", ["sk", "value"],
            {"program": program, "prefix": prefix},
            KeyConditionExpression=condition, ConsistentRead=True,
        )  # fmt: skip
        return {r["sk"]: r["value"] for r in found}

    def close(self) -> None:
        self._store.close()
