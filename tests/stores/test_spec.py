"""Store specs are parsed once, into a ``StoreSpec`` (issue 15, item 1)."""

from __future__ import annotations

import pytest

from ceap.errors import ConfigError
from stores.spec import StoreSpec, sqlite_file


@pytest.mark.parametrize(
    ("text", "file"),
    [("sqlite", None), ("sqlite:///tmp/a.db", "/tmp/a.db"), ("sqlite:rel.db", "rel.db")],
)
def test_sqlite_specs_name_their_file(text, file):
    spec = StoreSpec.parse(text)
    assert (spec.kind, spec.file, spec.local, str(spec)) == ("sqlite", file, True, text)
    assert sqlite_file(text) == file and StoreSpec.parse(spec) is spec


def test_dynamodb_specs_name_their_prefix_and_params():
    spec = StoreSpec.parse("dynamodb://ceap_?region=eu-west-1&consistent=true")
    assert (spec.kind, spec.prefix, spec.local) == ("dynamodb", "ceap_", False)
    assert spec.params == {"region": "eu-west-1", "consistent": "true"}
    assert sqlite_file(spec) is None and spec.absolute() is spec


@pytest.mark.parametrize("text", ["postgres://x", "dynamodb://p?regoin=x", "mysql"])
def test_a_bad_spec_is_a_config_error_naming_it(text):
    with pytest.raises(ConfigError, match="store"):
        StoreSpec.parse(text)


def test_absolute_names_the_same_file_from_any_directory(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("CEAP_HOME", "home")
    assert StoreSpec.parse("sqlite").absolute().database() == tmp_path / "home" / "ceap.db"
    spec = StoreSpec.parse("sqlite:rel.db").absolute()
    assert spec.text == f"sqlite://{tmp_path / 'rel.db'}" and spec.file == str(tmp_path / "rel.db")
