"""The DynamoDB backend: ``store.py`` (DynamoDBStore and its candidate, lookup, registry and
serving roles), ``codec.py`` (items, keys, indexes and expressions), ``tables.py`` (creating
tables and indexes), ``customers.py`` (per-customer reads), ``outbox.py`` (the dispatcher's
queue), ``journeys.py`` (journey steps: waiting rows, the facts of ``when:`` conditions),
``ledger.py`` (the streaming ledger), ``feedback.py`` (delivery feedback) and
``checkpoints.py`` (stream readers' positions)."""

from stores.dynamodb.store import DynamoDBStore

__all__ = ["DynamoDBStore"]
