"""``run.py export --glue-database DB``: the day's partitions in the Glue Data Catalog (moto's
server on loopback), exactly those the export wrote, at their S3 locations; a re-export of the
day replaces them."""

from __future__ import annotations

import pytest

from pipelines import export
from pipelines.export_glue import columns
from stores.spec import open_store
from tests.pipelines.test_export import DAY
from tests.pipelines.test_export_s3 import PREFIX, exported, run, s3_flags

pytestmark = pytest.mark.integration

DB = "ceap_analytics"


@pytest.fixture
def spec(export_store) -> str:
    return export_store


@pytest.fixture
def s3(s3_bucket, moto_endpoint):
    """A fresh bucket and a Glue client; the catalog is removed after the test."""
    import boto3

    glue = boto3.client("glue", endpoint_url=moto_endpoint, region_name="us-east-1")
    yield *s3_bucket, glue
    for table in export.TABLES:  # one moto server for the session: leave no catalog behind
        glue.delete_table(DatabaseName=DB, Name=table)
    glue.delete_database(Name=DB)


def glue_flags(endpoint: str) -> list[str]:
    return ["--glue-database", DB, "--glue-endpoint-url", endpoint, *s3_flags(endpoint)]


def partitions(glue) -> dict[tuple[str, str, str], str]:
    """(table, dt, program) -> location, for every partition of every export table."""
    out = {}
    for table in export.TABLES:
        for p in glue.get_partitions(DatabaseName=DB, TableName=table)["Partitions"]:
            out[(table, *p["Values"])] = p["StorageDescriptor"]["Location"]
    return out


def test_export_registers_exactly_the_written_partitions(spec, s3, moto_endpoint, capsys):
    client, bucket, glue = s3
    uri = f"s3://{bucket}/{PREFIX}"
    assert run(spec, uri, *glue_flags(moto_endpoint)) == 0

    written = exported(client, bucket)
    assert partitions(glue) == {
        (table, dt, program): f"{uri}/{table}/dt={dt}/program={program}/"
        for table, dt, program in written
    }
    for table in export.TABLES:
        found = glue.get_table(DatabaseName=DB, Name=table)["Table"]
        sd = found["StorageDescriptor"]
        assert sd["Columns"] == columns(table)
        assert [c["Name"] for c in sd["Columns"]] == export.SCHEMAS[table].names
        assert sd["Location"] == f"{uri}/{table}/"
        assert "Parquet" in sd["SerdeInfo"]["SerializationLibrary"]
        assert [k["Name"] for k in found["PartitionKeys"]] == ["dt", "program"]
        assert found["TableType"] == "EXTERNAL_TABLE"
    types = {c["Name"]: c["Type"] for c in columns("outbox")}
    assert (types["send_after"], types["attempts"], types["shadow"]) == (
        "timestamp", "bigint", "boolean",
    )  # fmt: skip
    assert f"glue {DB}: {len(written)} partitions created" in capsys.readouterr().out


@pytest.mark.slow
def test_reexport_with_fewer_programs_drops_the_stale_partitions(spec, s3, moto_endpoint):
    client, bucket, glue = s3
    uri = f"s3://{bucket}/{PREFIX}"
    assert run(spec, uri, *glue_flags(moto_endpoint)) == 0
    other_day = "2026-10-31"
    assert export.main(["--date", other_day, "--output", uri, "--store", spec,
                        *glue_flags(moto_endpoint)]) == 0  # fmt: skip
    before = partitions(glue)
    assert ("candidates", DAY, "surveys") in before
    assert ("candidates", other_day, "reviews") in before

    store = open_store(spec)
    store.connection.execute("DELETE FROM candidates WHERE program = 'surveys'")
    store.connection.execute("DELETE FROM responses WHERE program = 'surveys'")
    store.close()
    assert run(spec, uri, *glue_flags(moto_endpoint)) == 0

    after = partitions(glue)
    assert set(after) == set(exported(client, bucket))  # both days, as S3 holds them
    assert not [key for key in after if key[2] == "surveys"]
    assert {key for key in before if key[1] == other_day} <= set(after)  # other days untouched


def test_glue_database_needs_an_s3_output(spec, tmp_path, capsys):
    assert run(spec, str(tmp_path / "out"), "--glue-database", DB) == 2
    assert "--glue-database needs an s3:// --output" in capsys.readouterr().err
    assert not (tmp_path / "out").exists()


def test_an_empty_glue_database_is_a_usage_error(spec, tmp_path, capsys):
    """``--glue-database "$GLUE_DB"`` with the variable unset registered nothing, exit 0."""
    assert run(spec, "s3://bucket/out", "--glue-database", "") == 2
    assert "--glue-database is empty" in capsys.readouterr().err


def test_an_export_to_another_prefix_says_the_tables_are_elsewhere(spec, s3, moto_endpoint, capsys):
    """The day's partitions move to the new prefix; the tables (created by the first export)
    keep their location, and the export says so rather than leaving it to be found."""
    _, bucket, glue = s3
    assert run(spec, f"s3://{bucket}/{PREFIX}", *glue_flags(moto_endpoint)) == 0
    capsys.readouterr()
    moved = f"s3://{bucket}/moved"
    assert run(spec, moved, *glue_flags(moto_endpoint)) == 0
    err = capsys.readouterr().err
    for table in export.TABLES:
        assert f"note: glue table {table} is located at s3://{bucket}/{PREFIX}/{table}" in err
    assert all(loc.startswith(moved) for loc in partitions(glue).values())
