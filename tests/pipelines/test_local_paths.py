"""A program's relative paths are pinned on the driver, where they were written; on
Dataflow a file on this machine is refused, naming where it is (pipelines/local_paths.py)."""

from __future__ import annotations

import os

import pytest

from ceap.errors import ConfigError
from configs.schema import parse_program, read_yaml
from pipelines.local_paths import pin_local_paths

PROGRAM = """
program: asks
action: review
subject_type: product
source:
  - {type: parquet, options: {path: data/deliveries}}
  - {type: parquet, shadow: true, name: lake, options: {path: "s3://bucket/deliveries"}}
events: {type: event_log, options: {path: data/events}}
fields: {customer_id: customer_id, subject_id: product_id, event_time: delivered_at}
enrich:
  - {type: csv, key: customer_id, options: {path: /srv/customers.csv}}
filters:
  - {name: cap, type: frequency_cap, options: {max: 1, window: 30d, scope: all,
     history: {type: parquet, options: {path: data/contacts}, time_column: contacted_at}}}
scoring:
  models:
    - {id: m, type: sklearn, options: {path: models/m.skops, features: [price], sha256: "0000000000000000000000000000000000000000000000000000000000000000"}}
ranking: {top_n: 10, per: program}
channels: [{type: voice, options: {path: prompts.jsonl}}]
"""


def paths(program) -> dict[str, str]:
    return {
        "source": program.source[0].options.path,
        "shadow": program.source[1].options.path,
        "events": program.events.options.path,
        "enrich": program.enrich[0].options.path,
        "history": program.filters[0].options.history.options.path,
        "model": program.scoring.models[0].options.path,
        "voice": program.channels[0].options.path,
    }


@pytest.fixture
def program(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("CEAP_HOME", str(tmp_path / "home"))
    (tmp_path / "models").mkdir()
    (tmp_path / "models" / "m.skops").write_bytes(b"")
    return parse_program(read_yaml(PROGRAM), "asks.yaml")


def test_relative_paths_become_absolute_where_the_program_was_read(program, tmp_path):
    pin_local_paths(program)
    assert paths(program) == {
        "source": str(tmp_path / "data/deliveries"), "shadow": "s3://bucket/deliveries",
        "events": str(tmp_path / "data/events"), "enrich": "/srv/customers.csv",
        "history": str(tmp_path / "data/contacts"), "model": str(tmp_path / "models/m.skops"),
        "voice": "prompts.jsonl",  # the dispatcher's, not the workers'
    }  # fmt: skip
    os.chdir("/")  # a worker elsewhere reads the same files
    before = paths(program)
    pin_local_paths(program)
    assert paths(program) == before


def test_a_model_resolves_as_the_scorer_would_on_the_driver(program, tmp_path):
    """Not in the working directory: the driver's ``$CEAP_HOME``, then the source tree."""
    (tmp_path / "models" / "m.skops").unlink()
    pin_local_paths(program)
    assert paths(program)["model"] == str(tmp_path / "home" / "models/m.skops")


def test_dataflow_refuses_every_file_on_this_machine(program):
    with pytest.raises(ConfigError) as err:
        pin_local_paths(program, shared_disk=False)
    message = str(err.value)
    assert "Dataflow workers cannot read files on this machine" in message
    for where in ("source[0] options.path: 'data/deliveries'", "events options.path",
                  "enrich[0] options.path: '/srv/customers.csv'",
                  "filters[0] (cap) options.history.options.path", "scoring.models[0]"):  # fmt: skip
        assert where in message
    assert "s3://bucket" not in message and "prompts.jsonl" not in message
