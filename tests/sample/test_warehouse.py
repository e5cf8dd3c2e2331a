"""The sample warehouse: schemas, determinism, foreign keys, bad rows, times, parts."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
import pytest

from sample import TABLES, generate_warehouse
from sample import warehouse as warehouse_module

ROWS = 2_000
AS_OF = datetime(2024, 3, 1, tzinfo=UTC)
FACTS = ("deliveries", "watch_events", "listens", "service_interactions", "event_matches")
# Columns that may hold nulls by design (deliveries' bad rows are checked on their own).
NULLABLE = {
    ("service_interactions", "satisfaction"),
    *(("outcomes", c) for c in ("price", "watched_pct", "played_pct", "satisfaction")),
    ("outcomes", "interest_match"),
}
SUBJECT_TABLES = {
    "reviews": ("products", "product_id"),
    "video_ratings": ("videos", "video_id"),
    "music_feedback": ("tracks", "track_id"),
    "service_surveys": ("service_interactions", "interaction_id"),
    "event_invites": ("events", "event_id"),
}


def read(root: Path, name: str) -> pa.Table:
    return pq.read_table(root / name)


@pytest.fixture(scope="module")
def made(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict[str, int]]:
    root = tmp_path_factory.mktemp("warehouse")
    return root, generate_warehouse(root, rows=ROWS, seed=42, as_of=AS_OF)


@pytest.fixture(scope="module")
def tables(made: tuple[Path, dict[str, int]]) -> dict[str, pa.Table]:
    root, _ = made
    return {name: read(root, name) for name in TABLES}


def test_every_table_has_its_columns_and_types(tables: dict[str, pa.Table]) -> None:
    assert list(tables) == list(TABLES)
    for name, schema in TABLES.items():
        got = tables[name].schema
        assert got.names == schema.names, name
        assert got.types == schema.types, name


def test_counts_match_the_files_and_scale_from_rows(
    made: tuple[Path, dict[str, int]], tables: dict[str, pa.Table]
) -> None:
    root, counts = made
    assert counts == {name: t.num_rows for name, t in tables.items()}
    assert all((root / name / "part-00000.parquet").is_file() for name in TABLES)
    assert {name: counts[name] for name in FACTS} == dict.fromkeys(FACTS, ROWS)
    assert counts["customers"] == 200
    assert counts["products"] == counts["videos"] == counts["tracks"] == 50
    assert counts["contacts"] == counts["responses"] == ROWS // 5
    assert counts["outcomes"] == 5 * ROWS // 2
    assert (
        pc.value_counts(tables["outcomes"]["program"]).field("counts").to_pylist()
        == [ROWS // 2] * 5
    )


def test_ids_follow_the_conventions(tables: dict[str, pa.Table]) -> None:
    patterns = {
        ("customers", "customer_id"): r"^C\d{8}$",
        ("customers", "email"): r"^c\d{8}@example\.com$",
        ("customers", "phone"): r"^\+[1-9]\d{7,14}$",
        ("products", "product_id"): r"^P\d{6}$",
        ("videos", "video_id"): r"^V\d{6}$",
        ("tracks", "track_id"): r"^T\d{6}$",
        ("events", "event_id"): r"^E\d{5}$",
        ("deliveries", "delivery_id"): r"^D\d{9}$",
        ("service_interactions", "interaction_id"): r"^S\d{9}$",
    }
    for (name, column), pattern in patterns.items():
        values = tables[name][column]
        assert pc.all(pc.match_substring_regex(values, pattern)).as_py(), (name, column)
    assert tables["customers"]["customer_id"][0].as_py() == "C00000001"
    assert tables["deliveries"]["delivery_id"][-1].as_py() == f"D{ROWS:09d}"
    for name, column in [("deliveries", "delivery_id"), ("customers", "customer_id")]:
        assert pc.count_distinct(tables[name][column]).as_py() == tables[name].num_rows


def test_same_seed_same_data_other_seed_other_data(
    made: tuple[Path, dict[str, int]], tables: dict[str, pa.Table], tmp_path: Path
) -> None:
    generate_warehouse(tmp_path / "again", rows=ROWS, seed=42, as_of=AS_OF)
    for name in TABLES:
        assert read(tmp_path / "again", name).equals(tables[name]), name
    generate_warehouse(tmp_path / "other", rows=ROWS, seed=7, as_of=AS_OF)
    for name in ("customers", "deliveries", "outcomes"):
        assert not read(tmp_path / "other", name).equals(tables[name]), name


def _contained(values: pa.ChunkedArray, keys: pa.ChunkedArray) -> bool:
    values = values.drop_null()
    return pc.all(pc.is_in(values, value_set=keys.combine_chunks())).as_py() is not False


def test_foreign_keys_reference_existing_rows(tables: dict[str, pa.Table]) -> None:
    customers = tables["customers"]["customer_id"]
    for name in (*FACTS, "ratings", "contacts", "responses", "outcomes"):
        assert _contained(tables[name]["customer_id"], customers), name
    references = [
        ("deliveries", "product_id", "products"),
        ("watch_events", "video_id", "videos"),
        ("ratings", "video_id", "videos"),
        ("listens", "track_id", "tracks"),
        ("event_matches", "event_id", "events"),
    ]
    for name, column, target in references:
        assert _contained(tables[name][column], tables[target][column]), (name, column)
    for name in ("contacts", "responses", "outcomes"):
        for program, (target, key) in SUBJECT_TABLES.items():
            rows = tables[name].filter(pc.equal(tables[name]["program"], program))
            assert rows.num_rows > 0, (name, program)
            assert _contained(rows["subject_id"], tables[target][key]), (name, program)


def test_facts_agree_with_their_dimensions(tables: dict[str, pa.Table]) -> None:
    matches = tables["event_matches"].join(tables["events"], "event_id", right_suffix="_event")
    assert pc.all(pc.equal(matches["event_region"], matches["region"])).as_py()
    assert pc.all(pc.equal(matches["starts_at"], matches["starts_at_event"])).as_py()
    listens = tables["listens"].join(tables["tracks"], "track_id")
    assert pc.all(pc.equal(listens["track_ms"], listens["duration_ms"])).as_py()
    assert pc.all(pc.greater_equal(listens["listened_at"], listens["released_at"])).as_py()
    full = pc.greater_equal(listens["played_ms"], listens["track_ms"])
    assert pc.all(pc.equal(full, listens["full_playback"])).as_py()
    products = tables["products"]
    restricted = pc.is_in(products["category"], pa.array(["adult", "tobacco"]))
    assert pc.all(pc.equal(restricted, products["restricted"])).as_py()
    customers = tables["customers"].to_pandas()
    continent = {"us": "America/", "eu": "Europe/", "ap": ("Asia/", "Australia/")}
    for region, tz in zip(customers["region"], customers["timezone"], strict=True):
        assert tz.startswith(continent[region[:2]]), (region, tz)
    # Some customers are far more active than the median one.
    per_customer = pc.value_counts(tables["listens"]["customer_id"]).field("counts")
    counts = np.sort(per_customer.to_numpy())
    assert counts[-1] > 10 * np.median(counts)


def test_bad_rows_only_in_deliveries(tables: dict[str, pa.Table]) -> None:
    deliveries = tables["deliveries"]
    no_customer = deliveries["customer_id"].null_count / ROWS
    no_time = deliveries["delivered_at"].null_count / ROWS
    assert 0 < no_customer <= 0.002
    assert 0 < no_time <= 0.001
    assert deliveries["region"].null_count == deliveries["customer_id"].null_count
    for name, table in tables.items():
        for column in table.column_names:
            if name == "deliveries" and column in ("customer_id", "delivered_at", "region"):
                continue
            if (name, column) not in NULLABLE:
                assert table[column].null_count == 0, (name, column)


def test_watch_events_hold_a_few_exact_duplicates(tables: dict[str, pa.Table]) -> None:
    def duplicates(table: pa.Table) -> int:
        return table.num_rows - table.group_by(table.column_names).aggregate([]).num_rows

    assert 0 < duplicates(tables["watch_events"]) <= 0.002 * ROWS
    assert duplicates(tables["deliveries"]) == 0


def test_optional_outcome_features_are_set_for_their_program_only(
    tables: dict[str, pa.Table],
) -> None:
    outcomes = tables["outcomes"]
    own = {
        "reviews": "price",
        "video_ratings": "watched_pct",
        "music_feedback": "played_pct",
        "service_surveys": "satisfaction",
        "event_invites": "interest_match",
    }
    for program, feature in own.items():
        rows = outcomes.filter(pc.equal(outcomes["program"], program))
        for column in own.values():
            nulls = rows[column].null_count
            assert nulls == (0 if column == feature else rows.num_rows), (program, column)


def _auc(score: np.ndarray, label: np.ndarray) -> float:
    ranks = np.empty(len(score))
    ranks[np.argsort(score, kind="stable")] = np.arange(1, len(score) + 1)
    pos = label.sum()
    return (ranks[label].sum() - pos * (pos + 1) / 2) / (pos * (len(label) - pos))


def test_outcome_labels_carry_a_learnable_signal(tables: dict[str, pa.Table]) -> None:
    outcomes = tables["outcomes"].to_pandas()
    label = outcomes["responded"].to_numpy()
    assert 0.1 < label.mean() < 0.4
    assert _auc(outcomes["engagement_score"].to_numpy(), label) > 0.6
    videos = outcomes[outcomes["program"] == "video_ratings"]
    assert _auc(videos["watched_pct"].to_numpy(), videos["responded"].to_numpy()) > 0.6


def test_timestamps_are_relative_to_as_of(tables: dict[str, pa.Table]) -> None:
    window, horizon = AS_OF - timedelta(days=60), AS_OF + timedelta(days=60)
    seen = 0
    for name, table in tables.items():
        for field in table.schema:
            if not pa.types.is_timestamp(field.type):
                continue
            low, high = (v.as_py() for v in pc.min_max(table[field.name]).values())
            if field.name == "starts_at":  # upcoming events
                assert AS_OF < low <= high <= horizon, (name, field.name)
            elif field.name == "ends_at":  # ... that last 2 to 6 hours
                starts, ends = table["starts_at"], table["ends_at"]
                hours = pc.divide(pc.cast(pc.subtract(ends, starts), pa.int64()), 3_600_000_000)
                assert pc.min(hours).as_py() >= 2 and pc.max(hours).as_py() <= 6
            else:
                assert window < low <= high <= AS_OF, (name, field.name)
            seen += 1
    assert seen == 13
    released = tables["tracks"]["released_at"].to_pylist()
    assert any(t > AS_OF - timedelta(days=7) for t in released)


def test_as_of_defaults_to_todays_utc_midnight(tmp_path: Path) -> None:
    before = datetime.now(UTC).replace(hour=0, minute=0, second=0, microsecond=0)
    generate_warehouse(tmp_path, rows=200)
    after = datetime.now(UTC).replace(hour=0, minute=0, second=0, microsecond=0)
    latest = pc.max(read(tmp_path, "deliveries")["delivered_at"]).as_py()
    assert before - timedelta(days=1) < latest <= after
    # Naive datetimes are UTC; a date is its midnight.
    generate_warehouse(tmp_path / "a", rows=200, as_of=datetime(2024, 3, 1))
    generate_warehouse(tmp_path / "b", rows=200, as_of=date(2024, 3, 1))
    generate_warehouse(tmp_path / "c", rows=200, as_of=AS_OF)
    tables = [read(tmp_path / d, "listens") for d in "abc"]
    assert tables[0].equals(tables[2]) and tables[1].equals(tables[2])


def test_big_tables_split_into_parts_and_row_groups(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(warehouse_module, "PART_ROWS", 700)
    monkeypatch.setattr(warehouse_module, "ROW_GROUP_ROWS", 256)
    stale = tmp_path / "deliveries" / "part-00009.parquet"
    stale.parent.mkdir(parents=True)
    stale.write_bytes(b"left over from a bigger run")
    lines: list[str] = []
    counts = generate_warehouse(tmp_path, rows=ROWS, as_of=AS_OF, progress=lines.append)
    parts = sorted(p.name for p in (tmp_path / "deliveries").iterdir())
    assert parts == ["part-00000.parquet", "part-00001.parquet", "part-00002.parquet"]
    sizes = [pq.ParquetFile(tmp_path / "deliveries" / p).metadata.num_rows for p in parts]
    assert sizes == [700, 700, 600]
    meta = pq.ParquetFile(tmp_path / "deliveries" / parts[0]).metadata
    assert [meta.row_group(i).num_rows for i in range(meta.num_row_groups)] == [256, 256, 188]
    outcome_parts = list((tmp_path / "outcomes").glob("*.parquet"))
    assert len(outcome_parts) == -(-counts["outcomes"] // 700)
    assert read(tmp_path, "outcomes").num_rows == counts["outcomes"]
    assert "deliveries: 2,000 rows" in lines


def test_rejects_bad_arguments(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="rows"):
        generate_warehouse(tmp_path, rows=10)
    with pytest.raises(ValueError, match="seed"):
        generate_warehouse(tmp_path, seed=-1)


def test_dims_rows_grows_the_facts_alone(tmp_path: Path) -> None:
    """``bench/scale.py --dims-rows``: facts at ``rows``, every other table as for dims_rows."""
    counts = generate_warehouse(tmp_path, rows=20_000, seed=1, as_of=date(2024, 3, 1),
                                dims_rows=4_000)  # fmt: skip
    small = generate_warehouse(tmp_path / "small", rows=4_000, seed=1, as_of=date(2024, 3, 1))
    assert counts["deliveries"] == counts["listens"] == 20_000
    for table in ("customers", "products", "contacts", "responses", "outcomes"):
        assert counts[table] == small[table], table
    customers = set(pq.read_table(tmp_path / "customers").column("customer_id").to_pylist())
    delivered = set(pq.read_table(tmp_path / "deliveries").column("customer_id").to_pylist())
    assert delivered - {None, ""} <= customers  # facts still reference existing customers
