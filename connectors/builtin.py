"""Importing this module registers the built-in connectors (client libraries of the
remote ones are imported lazily, so this works without the optional extras)."""

from connectors import athena, bigquery, csv, event_log, kafka, kinesis, parquet, pubsub, snowflake  # noqa: F401
