"""``--now`` / ``--as-of`` on every command: ISO-8601 as UTC, and a bad value is a one-line
error and a non-zero exit, never a traceback."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from ceap.context import parse_now
from ceap.errors import EXIT_USAGE, ConfigError


def test_iso_times_are_read_as_utc():
    assert parse_now("2026-11-25T10:00:00Z") == datetime(2026, 11, 25, 10, tzinfo=UTC)
    assert parse_now("2026-11-25") == datetime(2026, 11, 25, tzinfo=UTC)
    assert parse_now("2026-11-25T11:00:00+01:00") == datetime(2026, 11, 25, 10, tzinfo=UTC)
    assert parse_now(None) is None


@pytest.mark.parametrize(
    "argv",
    [
        ["--program", "reviews", "--mode", "batch", "--now", "garbage"],
        ["dispatch", "--now", "garbage"],
        ["generate", "--as-of", "garbage"],
    ],
)
def test_a_bad_time_is_one_line_and_a_non_zero_exit(argv, tmp_path, monkeypatch, capsys):
    import run as cli

    monkeypatch.setenv("CEAP_HOME", str(tmp_path))
    code = cli.main([*argv, *(["--output", str(tmp_path / "w")] if argv[0] == "generate" else [])])
    assert code == EXIT_USAGE
    err = capsys.readouterr().err
    assert "'garbage' is not an ISO-8601 time" in err and "Traceback" not in err
    with pytest.raises(ConfigError, match="--now"):
        parse_now("garbage")
