"""Importing this module registers the built-in connectors (client libraries of the
remote ones are imported lazily, so this works without the optional extras)."""

from connectors import (  # noqa: F401
    athena,
    bigquery,
    csv,
    event_log,
    feast,
    kafka,
    kinesis,
    parquet,
    pubsub,
    sagemaker_feature_store,  # noqa: F401
    snowflake,
)
