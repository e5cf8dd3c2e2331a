"""``sagemaker_feature_store``: features looked up by key in a SageMaker Feature Store online
store (``BatchGetRecord``), for ``enrich:`` entries.

A feature store is not read whole: the enrichment step asks for the keys of each batch
(at most 100 record ids per call, the API's limit), caches the answers for a while, and
leaves nulls for keys the store does not know. Values arrive as text; a column whose
values all read as numbers (or true/false) becomes numeric (or boolean).

    enrich:
      - type: sagemaker_feature_store
        key: customer_id
        options: {feature_group: customers-fg, region: eu-west-1}
        columns: [trust_score, engagement_score]
"""

from __future__ import annotations

import os
import time
from typing import Any

import pyarrow as pa
from pydantic import BaseModel, ConfigDict, Field

from ceap.errors import ConnectorError
from ceap.plugins import connectors
from ceap.resilience import backoff_delay
from connectors.base import Connector

MAX_IDS = 100


class FeatureStoreOptions(BaseModel):
    model_config = ConfigDict(extra="forbid")
    feature_group: str = Field(min_length=1)
    region: str | None = None
    endpoint_url: str | None = None
    """Override (tests); also ``CEAP_AWS_ENDPOINT_URL``."""
    cache_seconds: float = Field(default=300, ge=0)
    """How long a looked-up record is reused before it is asked again."""
    timeout_seconds: float = Field(default=5, gt=0)


@connectors.register("sagemaker_feature_store")
class FeatureStoreConnector(Connector):
    Options = FeatureStoreOptions
    supports_lookup = True

    def client(self):
        import boto3
        from botocore.config import Config

        o = self.options
        config = Config(
            connect_timeout=o.timeout_seconds, read_timeout=o.timeout_seconds,
            retries={"mode": "adaptive", "total_max_attempts": 4},
        )  # fmt: skip
        return boto3.client(
            "sagemaker-featurestore-runtime", region_name=o.region,
            endpoint_url=o.endpoint_url or os.environ.get("CEAP_AWS_ENDPOINT_URL"), config=config,
        )  # fmt: skip

    def splits(self) -> list:
        raise ConnectorError("sagemaker_feature_store is a keyed lookup for enrich:, not a source")

    def lookup(
        self, keys: list[str], columns: list[str], client: Any = None
    ) -> dict[str, dict[str, Any]]:
        """key -> {feature: value as text} for the keys the store knows."""
        client = client or self.client()
        found: dict[str, dict[str, Any]] = {}
        pending = [str(k) for k in keys]
        for attempt in range(5):
            unprocessed: list[str] = []
            for i in range(0, len(pending), MAX_IDS):
                ids = pending[i : i + MAX_IDS]
                request = {
                    "FeatureGroupName": self.options.feature_group,
                    "RecordIdentifiersValueAsString": ids,
                }
                if columns:
                    request["FeatureNames"] = list(columns)
                try:
                    answer = client.batch_get_record(Identifiers=[request])
                except Exception as exc:  # noqa: BLE001 - named for the user, with the group
                    raise ConnectorError(
                        f"feature group {self.options.feature_group!r}: {exc}"
                    ) from exc
                for record in answer.get("Records", []):
                    values = {
                        f["FeatureName"]: f.get("ValueAsString") for f in record.get("Record", [])
                    }
                    found[record["RecordIdentifierValueAsString"]] = values
                for error in answer.get("Errors", []):
                    if error.get("ErrorCode") not in (None, "ResourceNotFound"):
                        raise ConnectorError(
                            f"feature group {self.options.feature_group!r}: {error}"
                        )
                for left in answer.get("UnprocessedIdentifiers", []):
                    unprocessed += left.get("RecordIdentifiersValueAsString", [])
            if not unprocessed:
                return found
            pending = unprocessed
            time.sleep(backoff_delay(attempt, base=0.1))
        raise ConnectorError(
            f"feature group {self.options.feature_group!r}: {len(pending)} ids left unprocessed"
        )


def typed(values: list[Any]) -> pa.Array:
    """Text values as numbers or booleans when every present value reads as one."""
    present = [v for v in values if v is not None]
    if present and all(v.lower() in ("true", "false") for v in present):
        return pa.array([None if v is None else v.lower() == "true" for v in values], pa.bool_())
    try:
        numbers = [None if v is None else float(v) for v in values]
    except ValueError:
        return pa.array(values, pa.string())
    return pa.array(numbers, pa.float64())
