"""Finding a program by name: a file named for it, else the file that declares it; when
none does, the error lists the programs there and the files that could not be read."""

from __future__ import annotations

import pytest

from ceap.errors import ConfigError
from configs.programs import find_program_path

PROGRAM = "program: {name}\naction: review\n"


def test_a_program_is_found_by_file_name_or_by_its_program_key(tmp_path):
    (tmp_path / "reviews.yaml").write_text(PROGRAM.format(name="reviews"))
    (tmp_path / "misc.yaml").write_text(PROGRAM.format(name="ratings"))
    assert find_program_path("reviews", tmp_path).name == "reviews.yaml"
    assert find_program_path("ratings", tmp_path).name == "misc.yaml"


def test_a_missing_program_names_the_files_that_could_not_be_read(tmp_path):
    """The program may be in a file with a YAML mistake (here a duplicated key): say so,
    rather than only "no program"."""
    (tmp_path / "reviews.yaml").write_text(PROGRAM.format(name="reviews"))
    (tmp_path / "mine.yaml").write_text("program: surveys\nprogram: surveys\n")
    with pytest.raises(ConfigError) as err:
        find_program_path("surveys", tmp_path)
    message = str(err.value)
    assert "no program 'surveys'" in message and "mine.yaml: " in message
    assert "duplicate key 'program'" in message
