"""``enrich: [{type: sagemaker_feature_store}]``: features looked up by key per batch
(BatchGetRecord, at most 100 ids per call, unprocessed ids retried), cached, typed, and
joined onto the candidates; unknown keys keep nulls. Tested with botocore's Stubber."""

from __future__ import annotations

import apache_beam as beam
import boto3
import pyarrow as pa
from apache_beam.testing.test_pipeline import TestPipeline
from apache_beam.testing.util import assert_that, equal_to
from botocore.stub import ANY, Stubber

from configs.schema import EnrichConfig
from connectors.sagemaker_feature_store import FeatureStoreConnector
from transforms import enrichment


def record(key: str, trust: str, opted: str) -> dict:
    return {
        "FeatureGroupName": "customers-fg", "RecordIdentifierValueAsString": key,
        "Record": [{"FeatureName": "trust_score", "ValueAsString": trust},
                   {"FeatureName": "opted_out", "ValueAsString": opted}],
    }  # fmt: skip


def stubbed_client():
    client = boto3.client("sagemaker-featurestore-runtime", region_name="us-east-1",
                          aws_access_key_id="x", aws_secret_access_key="x")  # fmt: skip
    stub = Stubber(client)
    first = {"Identifiers": [{"FeatureGroupName": "customers-fg", "RecordIdentifiersValueAsString": ANY,
                              "FeatureNames": ["trust_score", "opted_out"]}]}  # fmt: skip
    stub.add_response("batch_get_record", {
        "Records": [record("c1", "0.9", "false")], "Errors": [],
        "UnprocessedIdentifiers": [{"FeatureGroupName": "customers-fg", "RecordIdentifiersValueAsString": ["c2"]}],
    }, first)  # fmt: skip
    stub.add_response(
        "batch_get_record",
        {"Records": [record("c2", "0.2", "true")], "Errors": [], "UnprocessedIdentifiers": []},
        first,
    )
    stub.activate()
    return client, stub


def test_lookup_batches_retries_unprocessed_and_types_values(monkeypatch):
    client, stub = stubbed_client()
    connector = FeatureStoreConnector({"feature_group": "customers-fg", "region": "us-east-1"})
    found = connector.lookup(["c1", "c2", "c9"], ["trust_score", "opted_out"], client=client)
    assert found == {
        "c1": {"trust_score": "0.9", "opted_out": "false"},
        "c2": {"trust_score": "0.2", "opted_out": "true"},
    }
    stub.assert_no_pending_responses()


def test_enrich_step_joins_features_by_key_and_caches(monkeypatch):
    client, stub = stubbed_client()
    monkeypatch.setattr(FeatureStoreConnector, "client", lambda self: client)
    spec = EnrichConfig(type="sagemaker_feature_store", key="customer_id",
                        options={"feature_group": "customers-fg", "region": "us-east-1"},
                        columns=["trust_score", "opted_out"])  # fmt: skip
    spec.options = FeatureStoreConnector.Options.model_validate(spec.options)
    batch = pa.RecordBatch.from_pydict(
        {"customer_id": ["c1", "c2", "c9", "c1"], "trust_score": [0.0] * 4}
    )
    again = pa.RecordBatch.from_pydict(
        {"customer_id": ["c2"], "trust_score": [0.0]}
    )  # cached: no call
    with TestPipeline() as p:
        rows = (
            p | beam.Create([batch, again]) | enrichment.Enrich([spec], "reviews")
            | beam.FlatMap(lambda b: [(r["customer_id"], r["trust_score"], r["opted_out"]) for r in b.to_pylist()])
        )  # fmt: skip
        assert_that(
            rows,
            equal_to(
                [
                    ("c1", 0.9, False),
                    ("c2", 0.2, True),
                    ("c9", None, None),
                    ("c1", 0.9, False),
                    ("c2", 0.2, True),
                ]
            ),
        )
