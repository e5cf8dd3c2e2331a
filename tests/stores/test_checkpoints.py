"""Stream checkpoints (stores/checkpoints.py) live in the run's store: a SQLite file's table,
or a DynamoDB store's own table (so a reader on any worker finds them), with one behaviour."""

from __future__ import annotations

import sqlite3
from collections.abc import Iterator
from uuid import uuid4

import pytest

from stores.checkpoints import Checkpoints

SHARD = "kinesis:orders:shardId-000000000001"


@pytest.fixture(params=["sqlite", pytest.param("dynamodb", marks=pytest.mark.integration)])
def spec(request: pytest.FixtureRequest, tmp_path) -> Iterator[str]:
    if request.param == "sqlite":
        yield "sqlite:///" + str(tmp_path / "ceap.db")
    else:
        endpoint = request.getfixturevalue("moto_endpoint")
        yield f"dynamodb://k{uuid4().hex[:10]}_?region=us-east-1&endpoint_url={endpoint}"


def test_checkpoints_are_kept_per_program_and_key(spec: str) -> None:
    with Checkpoints(spec) as saved:
        assert saved.get_checkpoint("p", SHARD) is None and saved.checkpoints("p") == {}
        saved.set_checkpoint("p", SHARD, "49590338271490256608559692538361571095921575989136588801")
        saved.set_checkpoint("p", SHARD + ":end", "7")
        saved.set_checkpoint("p", "kinesis:other:shardId-0", "3")
        saved.set_checkpoint("q", SHARD, "1")
    with Checkpoints(spec) as again:  # another reader, another worker: the same positions
        assert again.get_checkpoint("p", SHARD).startswith("4959")
        assert again.checkpoints("p", "kinesis:orders:") == {
            SHARD: "49590338271490256608559692538361571095921575989136588801", SHARD + ":end": "7"}  # fmt: skip
        assert set(again.checkpoints("p")) == {SHARD, SHARD + ":end", "kinesis:other:shardId-0"}
        assert again.checkpoints("q") == {SHARD: "1"}


def test_a_checkpoint_never_moves_back(spec: str) -> None:
    """A reader whose shard went to another one (a retried bundle, a stalled worker) saves
    an older sequence number after the newer one: the newer one stands, as with the KCL."""
    with Checkpoints(spec) as saved:
        saved.set_checkpoint("p", SHARD, "1000")
        saved.set_checkpoint("p", SHARD, "999")  # shorter: smaller
        saved.set_checkpoint("p", SHARD, "0998")  # not a sequence number: written as it is
        assert saved.get_checkpoint("p", SHARD) == "0998"
        saved.set_checkpoint("p", SHARD, "1001")
        saved.set_checkpoint("p", SHARD, "1000")  # as long, smaller
        assert saved.get_checkpoint("p", SHARD) == "1001"
        saved.set_checkpoint("p", SHARD, "1001")  # the same again
        saved.set_checkpoint("p", SHARD, "10000")
        assert saved.get_checkpoint("p", SHARD) == "10000"


@pytest.mark.integration
def test_checkpoints_of_a_dynamodb_store_are_in_its_table_not_a_local_file(
    tmp_path, monkeypatch, moto_endpoint: str
) -> None:
    """They used to go to $CEAP_HOME/ceap.db of whichever machine the reader ran on."""
    import boto3

    monkeypatch.setenv("CEAP_HOME", str(tmp_path / "home"))
    prefix = f"k{uuid4().hex[:10]}_"
    with Checkpoints(f"dynamodb://{prefix}?region=us-east-1&endpoint_url={moto_endpoint}") as c:
        assert c.path is None
        c.set_checkpoint("p", SHARD, "42")
    assert not (tmp_path / "home").exists()
    client = boto3.client("dynamodb", region_name="us-east-1", endpoint_url=moto_endpoint)
    item = client.get_item(
        TableName=f"{prefix}stream_checkpoints",
        Key={"program": {"S": "p"}, "sk": {"S": SHARD}},
        ConsistentRead=True,
    )["Item"]
    assert item["value"] == {"S": "42"} and "updated_at" in item


def test_checkpoints_of_a_sqlite_store_are_a_table_of_its_file(tmp_path) -> None:
    db = tmp_path / "ceap.db"
    with Checkpoints("sqlite:///" + str(db)) as c:
        assert c.path is not None and c.path.samefile(db)
        c.set_checkpoint("p", SHARD, "42")
    with sqlite3.connect(db) as con:
        rows = con.execute("SELECT program, key, value FROM stream_checkpoints").fetchall()
    assert rows == [("p", SHARD, "42")]
