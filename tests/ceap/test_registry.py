"""The plugin registries: short names, dotted paths, base-class checks and entry points."""

from __future__ import annotations

import importlib
import shutil
import sys
from pathlib import Path

import pyarrow as pa
import pytest

from ceap.errors import PluginError
from ceap.plugins import connectors, filters, scorers
from configs.schema import parse_program, read_yaml
from connectors.parquet import ParquetConnector
from scorers.column import ColumnScorer
from transforms.filters.values import ExcludeValuesFilter

PLUGIN_SOURCE = Path(__file__).resolve().parents[1] / "plugins" / "ceap_test_plugin.py"


def test_builtins_resolve_by_short_name():
    assert connectors.get("parquet") is ParquetConnector
    assert scorers.get("column") is ColumnScorer
    assert filters.get("exclude_values").type_name == "exclude_values"
    assert {"expression", "opt_out", "frequency_cap", "dedup"} <= set(filters.names())


def test_unknown_name_lists_the_known_ones():
    with pytest.raises(PluginError) as info:
        scorers.get("xgboosted")
    message = str(info.value)
    assert "unknown scorer type 'xgboosted'" in message
    assert "bedrock, column, sagemaker, sklearn" in message
    assert "'ceap.scorers'" in message


@pytest.mark.parametrize(
    "path",
    [
        "transforms.filters.values:ExcludeValuesFilter",
        "transforms.filters.values.ExcludeValuesFilter",
    ],
)
def test_a_dotted_path_works(path):
    assert filters.get(path) is ExcludeValuesFilter


def test_a_class_of_the_wrong_base_is_rejected():
    with pytest.raises(PluginError, match="is not a Scorer"):
        scorers.get("transforms.filters.values:ExcludeValuesFilter")
    with pytest.raises(PluginError, match="is not a Filter"):
        filters.get("pathlib:Path")


def test_a_dotted_path_that_does_not_import():
    with pytest.raises(PluginError, match="cannot import scorer 'no_such_pkg.mod:Thing'"):
        scorers.get("no_such_pkg.mod:Thing")
    with pytest.raises(PluginError, match="cannot import scorer 'scorers.column:Nope'"):
        scorers.get("scorers.column:Nope")


def test_register_twice_under_one_name_is_an_error():
    class Other(ExcludeValuesFilter):
        pass

    with pytest.raises(PluginError, match="registered twice"):
        filters.register("exclude_values")(Other)


# --- a third-party plugin, found through its entry point ------------------------------------


def _install(site: Path, entry_points: str) -> None:
    """A minimal installed distribution: the module and its .dist-info metadata."""
    shutil.copy(PLUGIN_SOURCE, site / "ceap_test_plugin.py")
    info = site / "ceap_test_plugin-0.1.dist-info"
    info.mkdir()
    (info / "METADATA").write_text("Metadata-Version: 2.1\nName: ceap_test_plugin\nVersion: 0.1\n")
    (info / "entry_points.txt").write_text(entry_points)


@pytest.fixture
def site(tmp_path, monkeypatch):
    """``tmp_path`` as a site directory on sys.path; the registry and module cache are
    restored afterwards so the plugin does not leak into other tests."""
    scorers.names()  # load the built-ins into the dict we copy
    monkeypatch.setattr(scorers, "_classes", dict(scorers._classes))
    monkeypatch.syspath_prepend(str(tmp_path))
    importlib.invalidate_caches()
    yield tmp_path
    sys.modules.pop("ceap_test_plugin", None)


def test_an_entry_point_plugin_adds_a_scorer_with_no_core_change(site, ctx):
    _install(site, "[ceap.scorers]\nconstant = ceap_test_plugin:ConstantScorer\n")
    assert "constant" in scorers.names()

    program = parse_program(
        read_yaml("""
program: plugged
action: review
subject_type: product
source: {type: parquet, options: {path: data/warehouse/deliveries}}
fields: {customer_id: customer_id, subject_id: product_id}
scoring:
  models:
    - {id: const_v1, type: constant, options: {value: 0.75}}
"""),
        "plugged.yaml",
    )
    model = program.scoring.models[0]
    cls = scorers.get(model.type)
    assert cls.__module__ == "ceap_test_plugin" and cls.type_name == "constant"
    assert type(model.options).__name__ == "ConstantOptions"  # validated by the plugin's model

    scorer = cls(model.options, model.id, ctx)
    scorer.setup()
    batch = pa.RecordBatch.from_pydict({"customer_id": ["c1", "c2", "c3"]})
    assert scorer.score(batch).tolist() == [0.75, 0.75, 0.75]


def test_an_entry_point_plugin_options_are_validated(site):
    _install(site, "[ceap.scorers]\nconstant = ceap_test_plugin:ConstantScorer\n")
    data = read_yaml("""
program: plugged
action: review
subject_type: product
source: {type: parquet, options: {path: x}}
fields: {customer_id: customer_id, subject_id: product_id}
scoring: {models: [{id: c, type: constant, options: {valu: 1}}]}
""")
    from ceap.errors import ConfigError

    with pytest.raises(ConfigError) as info:
        parse_program(data, "plugged.yaml")
    assert "scoring.models[0].options.value: Field required" in str(info.value)
    assert "scoring.models[0].options.valu: unknown key" in str(info.value)


def test_an_entry_point_of_the_wrong_kind_or_broken_is_a_plugin_error(site):
    _install(
        site,
        "[ceap.scorers]\nwrong = pathlib:Path\nbroken = ceap_test_plugin_missing:Scorer\n",
    )
    with pytest.raises(PluginError, match="is not a Scorer"):
        scorers.get("wrong")
    with pytest.raises(PluginError, match="broken"):
        scorers.get("broken")
