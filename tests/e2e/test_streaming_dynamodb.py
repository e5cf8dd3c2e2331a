"""The whole streaming end to end (tests/e2e/test_streaming_e2e.py) on the DynamoDB store,
moto's server on loopback: ``run.py --mode streaming --store dynamodb://...`` fed through the
event log, killed with SIGKILL mid-stream, restarted, stopped with SIGINT. The ledger
(outcomes, micro-batches, resume position, seen events) is DynamoDB's: nothing is written to
the local SQLite file."""

from __future__ import annotations

from uuid import uuid4

import pytest

from stores.spec import open_store
from tests.e2e.test_streaming_e2e import assert_each_event_once, kill_restart_and_drain

pytestmark = pytest.mark.integration


@pytest.mark.slow
def test_kill_restart_and_drain_on_dynamodb_account_for_every_event_once(tmp_path, moto_endpoint):
    spec = f"dynamodb://stream{uuid4().hex[:8]}_?region=us-east-1&endpoint_url={moto_endpoint}"
    ledger = open_store(spec)  # creates the tables the runs will find
    outcomes = ledger.client.get_paginator("scan")

    def size() -> int:  # a COUNT scan: moto answers one request at a time, keep them few
        pages = outcomes.paginate(TableName=ledger.name("event_outcomes"), Select="COUNT")
        return sum(page["Count"] for page in pages)

    try:
        sent, configs = kill_restart_and_drain(tmp_path, spec, size, every=0.25, timeout=120)
    finally:
        ledger.close()
    assert_each_event_once(spec, sent, configs)
    assert not (tmp_path / "home" / "ceap.db").exists()  # no local store on the side
