"""A program's relative paths are pinned on the driver, where they were written; on
Dataflow a file on this machine is refused, naming where it is (pipelines/local_paths.py)."""

from __future__ import annotations

import os

import pytest

from ceap.errors import ConfigError
from configs.schema import parse_program, read_yaml
from pipelines.local_paths import DATAFLOW, ELSEWHERE, pin_local_paths

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
    written = paths(program)
    pinned = pin_local_paths(program)
    assert paths(program) == written  # a copy: the program read stays as written
    assert paths(pinned) == {
        "source": str(tmp_path / "data/deliveries"), "shadow": "s3://bucket/deliveries",
        "events": str(tmp_path / "data/events"), "enrich": "/srv/customers.csv",
        "history": str(tmp_path / "data/contacts"), "model": str(tmp_path / "models/m.skops"),
        "voice": "prompts.jsonl",  # the dispatcher's, not the workers'
    }  # fmt: skip
    os.chdir("/")  # a worker elsewhere reads the same files
    assert paths(pin_local_paths(pinned)) == paths(pinned)
    assert paths(pin_local_paths(program, ELSEWHERE)) == written  # their own disks: as written


def test_a_model_resolves_as_the_scorer_would_on_the_driver(program, tmp_path):
    """Not in the working directory: the driver's ``$CEAP_HOME``, then the source tree."""
    (tmp_path / "models" / "m.skops").unlink()
    assert paths(pin_local_paths(program))["model"] == str(tmp_path / "home" / "models/m.skops")


def test_dataflow_refuses_every_file_on_this_machine(program):
    with pytest.raises(ConfigError) as err:
        pin_local_paths(program, DATAFLOW)
    message = str(err.value)
    assert "Dataflow workers cannot read files on this machine" in message
    for where in ("source[0] options.path: 'data/deliveries'", "events options.path",
                  "enrich[0] options.path: '/srv/customers.csv'",
                  "filters[0] (cap) options.history.options.path", "scoring.models[0]"):  # fmt: skip
        assert where in message
    assert "s3://bucket" not in message and "prompts.jsonl" not in message


def test_on_dataflow_a_model_may_be_in_the_workers_image_and_file_urls_are_local(program):
    """``--sdk_container_image``: the model path is the image's (the Dockerfile copies
    ``models/`` to /opt/ceap/models), left as written; data files are still refused, a
    ``file://`` URL among them."""
    program.source[1].options.path = "file:///srv/deliveries"
    with pytest.raises(ConfigError) as err:
        pin_local_paths(program, DATAFLOW, image=True)
    assert "'file:///srv/deliveries'" in str(err.value)
    assert "scoring.models" not in str(err.value)
    for item in (*program.source, program.events, *program.enrich):
        item.options.path = "s3://bucket/" + item.options.path.rsplit("/", 1)[-1]
    program.filters[0].options.history.options.path = "s3://bucket/contacts"
    pinned = pin_local_paths(program, DATAFLOW, image=True)
    assert paths(pinned)["model"] == "models/m.skops"
