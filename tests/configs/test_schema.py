"""The program config contract (docs/architecture.md, "Program YAML"): inline YAML in, a ProgramConfig or a
ConfigError naming the file and the path to the bad key out."""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path

import pytest

from ceap.errors import ConfigError
from configs.schema import (
    DuplicateKeyError,
    load_program,
    parse_program,
    program_paths,
    read_yaml,
)

CONFIG_DIR = Path(__file__).resolve().parents[2] / "configs"

MINIMAL = """
program: demo
action: review
subject_type: product
source:
  - type: parquet
    options: {path: data/warehouse/deliveries}
fields: {customer_id: customer_id, subject_id: product_id}
scoring:
  models:
    - {id: m1, type: column, options: {column: engagement_score}}
"""


def parse(text: str):
    return parse_program(read_yaml(text), "x.yaml")


def with_(extra: str, base: str = MINIMAL) -> str:
    """The minimal config with top-level blocks added or replaced."""
    data = read_yaml(base)
    data.update(read_yaml(extra))
    import yaml

    return yaml.safe_dump(data, sort_keys=False)


def error_of(text: str) -> str:
    with pytest.raises(ConfigError) as info:
        parse(text)
    message = str(info.value)
    assert message.startswith("x.yaml: "), message
    return message


def test_minimal_config_gets_its_defaults():
    program = parse(MINIMAL)
    assert program.program == "demo"
    assert program.source[0].traffic == 100
    assert program.scoring.models[0].traffic == 100
    assert program.scoring.models[0].options.column == "engagement_score"
    assert program.scoring.fallback == "skip"
    assert program.ranking.per == "program"
    assert program.store.ttl == timedelta(days=30)
    assert program.filters == [] and program.channels == []


def test_a_single_source_mapping_is_a_list_of_one():
    program = parse(with_("source: {type: parquet, options: {path: some/dir}}"))
    assert len(program.source) == 1
    assert program.source[0].options.path == "some/dir"
    assert program.source[0].traffic == 100


def test_bad_filter_option_names_the_index_and_key():
    message = error_of(
        with_("""
filters:
  - {type: expression, options: {keep: "trust_score > 0.3"}}
  - {type: frequency_cap, options: {max: 0, window: 30d}}
""")
    )
    assert "filters[1].options.max" in message
    assert "greater than or equal to 1" in message


def test_unknown_scorer_type_lists_the_known_ones():
    message = error_of(with_("scoring: {models: [{id: m1, type: xgboosted, options: {}}]}"))
    assert "scoring.models[0].type" in message
    assert "'xgboosted'" in message and "column" in message and "sklearn" in message


@pytest.mark.parametrize(
    ("extra", "path"),
    [
        ("colour: red", "colour"),
        (
            "scoring: {models: [{id: m1, type: column, options: {column: x}}], minscore: 1}",
            "scoring.minscore",
        ),
        ("channels: [{type: email, delay: 1d, sendat: '10:00'}]", "channels[0].sendat"),
        ("filters: [{type: dedup, options: {live: true, lve: false}}]", "filters[0].options.lve"),
    ],
)
def test_unknown_keys_are_rejected_with_their_path(extra, path):
    message = error_of(with_(extra))
    assert f"{path}: unknown key" in message


@pytest.mark.parametrize(
    ("extra", "path"),
    [
        (
            "filters: [{type: frequency_cap, options: {max: 1, window: 3x}}]",
            "filters[0].options.window",
        ),
        ("store: {ttl: 3x}", "store.ttl"),
        ("channels: [{type: email, delay: 3x}]", "channels[0].delay"),
    ],
)
def test_bad_durations_name_the_key_and_the_value(extra, path):
    message = error_of(with_(extra))
    assert path in message
    assert "'3x' is not a duration" in message


@pytest.mark.parametrize(
    ("extra", "path", "got"),
    [
        ("store: {ttl: 30}", "store.ttl", "30"),
        ("store: {ttl: '30'}", "store.ttl", "'30'"),
        ("store: {ttl: 1.5}", "store.ttl", "1.5"),
        ("staleness: 0", "staleness", "0"),
        ("channels: [{type: email, delay: 2}]", "channels[0].delay", "2"),
        ("events: {type: event_log, options: {path: e}, delay: 2}", "events.delay", "2"),
        (
            "events: {type: event_log, options: {path: e}, max_lateness: 60}",
            "events.max_lateness",
            "60",
        ),
        (
            "events: {type: event_log, options: {path: e}, dedup_window: 1}",
            "events.dedup_window",
            "1",
        ),
        (
            "filters: [{type: frequency_cap, options: {max: 1, window: 30}}]",
            "filters[0].options.window",
            "30",
        ),
        (
            "channels: [{type: email, options: {frequency_cap: {max: 3, window: 7}}}]",
            "channels[0].options.frequency_cap.window",
            "7",
        ),
    ],
)
def test_a_bare_number_is_not_a_duration(extra, path, got):
    """``ttl: 30`` would be 30 seconds: surely not what was meant. Every duration, the
    program's own and those in plugin options, asks for the unit."""
    message = error_of(with_(extra))
    assert (
        f"{path}: Value error, a duration needs a unit: write e.g. 30d, 12h, 15m or 30s" in message
    )
    assert f"(got {got})" in message
    assert message.count("\n  ") == 1, message  # one error, not a second one for the same key


def test_durations_with_a_unit_still_load():
    program = parse(
        with_("""
store: {ttl: 30d}
staleness: 1h30m
channels: [{type: email, delay: 0s, options: {frequency_cap: {max: 3, window: 7d}}}]
filters: [{type: frequency_cap, options: {max: 1, window: 12h}}]
""")
    )
    assert program.store.ttl == timedelta(days=30)
    assert program.staleness == timedelta(minutes=90)
    assert program.channels[0].delay == timedelta(0)
    assert program.channels[0].options.frequency_cap.window == timedelta(days=7)
    assert program.filters[0].options.window == timedelta(hours=12)


def test_an_overlong_duration_is_a_config_error_not_a_crash():
    assert "store.ttl: Value error, '9999999999d' is too long" in error_of(
        with_("store: {ttl: 9999999999d}")
    )


@pytest.mark.parametrize("send_at", ["25:00", "10", "9:00", "10:60"])
def test_bad_send_at(send_at):
    message = error_of(with_(f"channels: [{{type: email, send_at: '{send_at}'}}]"))
    assert "channels[0].send_at" in message and "HH:MM" in message


def test_traffic_shares_must_sum_to_100():
    message = error_of(
        with_("""
scoring:
  models:
    - {id: a, type: column, options: {column: x}, traffic: 60}
    - {id: b, type: column, options: {column: x}, traffic: 30}
""")
    )
    assert "scoring.models" in message and "sum to 100, got 90" in message

    message = error_of(
        with_("""
source:
  - {type: parquet, options: {path: a}, traffic: 50}
  - {type: parquet, options: {path: b}}
""")
    )
    assert "source" in message and "needs `traffic:`" in message


def test_shadow_sources_take_no_traffic_share():
    program = parse(
        with_("""
source:
  - {type: parquet, options: {path: a}}
  - {type: csv, options: {path: b}, shadow: true}
""")
    )
    assert [s.options.path for s in program.primary_sources] == ["a"]
    assert program.source[0].traffic == 100 and program.source[1].traffic is None


def test_two_filters_of_the_same_type_get_distinct_labels():
    program = parse(
        with_("""
filters:
  - {type: expression, options: {keep: "a > 1"}}
  - {type: expression, options: {keep: "b > 1"}}
  - {type: dedup, name: no_repeats}
""")
    )
    assert program.filter_labels() == ["0:expression", "1:expression", "no_repeats"]


def test_duplicate_filter_names_are_rejected():
    message = error_of(
        with_("""
filters:
  - {type: expression, name: trust, options: {keep: "a > 1"}}
  - {type: expression, name: trust, options: {keep: "b > 1"}}
""")
    )
    assert "names must be unique" in message and "trust" in message


def test_enrich_on_key_stays_a_string_key():
    """YAML 1.1 reads ``on``/``yes``/``no`` as booleans; the contract's ``on:`` must survive."""
    program = parse(
        with_("""
enrich:
  - type: parquet
    key: subject_id
    on: product_id
    options: {path: data/warehouse/products}
    columns: [category, no]
""")
    )
    assert program.enrich[0].on == "product_id"
    assert program.enrich[0].columns == ["category", "no"]


def test_duplicate_model_ids_and_channels_are_rejected():
    assert "model ids must be unique" in error_of(
        with_("""
scoring:
  models:
    - {id: a, type: column, options: {column: x}, traffic: 50}
    - {id: a, type: column, options: {column: y}, traffic: 50}
""")
    )
    assert "step names must be unique (a second step on a channel needs a `name:`)" in error_of(
        with_("channels: [{type: email}, {type: email}]")
    )


def test_missing_required_blocks_and_bad_names():
    assert "fields: Field required" in error_of(MINIMAL.replace("fields:", "flds:"))
    assert "program: String should match pattern" in error_of(
        MINIMAL.replace("program: demo", "program: Demo-1")
    )
    assert "expected a mapping" in str(
        pytest.raises(ConfigError, parse_program, [1], "x.yaml").value
    )


def test_load_program_reports_bad_yaml_with_the_file(tmp_path):
    path = tmp_path / "broken.yaml"
    path.write_text("program: [unclosed\n")
    with pytest.raises(ConfigError, match="broken.yaml: not valid YAML"):
        load_program(path)
    with pytest.raises(ConfigError, match="no such program config"):
        load_program(tmp_path / "absent.yaml")


@pytest.mark.parametrize(
    ("extra", "key", "where"),
    [
        (
            "ranking: {top_n: 5, per: customer, top_n: 50}",
            "ranking.top_n",
            "line 12, columns 11 and 36",
        ),
        ("filters: [{type: dedup}]\nfilters: [{type: opt_out}]", "filters", "lines 12 and 13"),
        (
            "channels:\n  - type: email\n    delay: 1d\n    delay: 3d",
            "channels[0].delay",
            "lines 14 and 15",
        ),
        ("scoring:\n  min_score: 0.1", "scoring", "lines 9 and 12"),
    ],
)
def test_a_duplicate_key_is_an_error_not_last_one_wins(extra, key, where):
    """YAML 1.2 forbids a key twice in one mapping; PyYAML alone keeps the last one, so
    ``top_n: 5 ... top_n: 50`` ran with 50 and a second ``filters:`` dropped the first."""
    with pytest.raises(DuplicateKeyError) as info:
        read_yaml(MINIMAL + extra)
    assert str(info.value) == (
        f"duplicate key {key!r} ({where}); a key may appear once per mapping (YAML 1.2), "
        "keep one of them"
    )


def test_merge_keys_may_still_be_overridden():
    data = read_yaml("base: &b {top_n: 5, per: customer}\nranking:\n  <<: *b\n  top_n: 50\n")
    assert data["ranking"] == {"top_n": 50, "per": "customer"}


def test_load_program_names_the_file_with_the_duplicate_key(tmp_path):
    path = tmp_path / "dup.yaml"
    path.write_text(MINIMAL + "ranking: {top_n: 5, per: customer, top_n: 50}\n")
    with pytest.raises(ConfigError) as info:
        load_program(path)
    assert str(info.value).startswith(
        f"{path}: not valid YAML: duplicate key 'ranking.top_n' (line 12"
    )


@pytest.mark.parametrize(
    ("extra", "expected"),
    [
        ("ranking: {top_n: 5, per: customer, top_n: 50}", "duplicate key 'ranking.top_n'"),
        ("store: {ttl: 30}", "store.ttl: Value error, a duration needs a unit"),
    ],
)
def test_the_cli_refuses_the_program_with_exit_code_1(
    tmp_path, monkeypatch, capsys, extra, expected
):
    import run as cli

    configs = tmp_path / "configs"
    configs.mkdir()
    (configs / "demo.yaml").write_text(MINIMAL + extra + "\n")
    monkeypatch.setenv("CEAP_HOME", str(tmp_path / "home"))
    code = cli.main(["--program", "demo", "--mode", "batch", "--config-dir", str(configs)])
    err = capsys.readouterr().err
    assert code == 1
    assert f"program demo cannot run: {configs / 'demo.yaml'}: " in err
    assert expected in err


@pytest.mark.parametrize("path", program_paths(CONFIG_DIR), ids=lambda p: p.stem)
def test_every_shipped_config_loads(path):
    program = load_program(path)
    assert program.program
    assert len(set(program.filter_labels())) == len(program.filters)
