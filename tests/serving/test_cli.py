"""``run.py serve`` refuses a store it cannot open before it announces an address."""

from __future__ import annotations


def test_a_corrupt_store_is_one_line_and_exit_1(tmp_path, capsys):
    import run as cli

    db = tmp_path / "ceap.db"
    db.write_bytes(b"this is not a database" * 100)
    assert cli.main(["serve", "--store", f"sqlite://{db}", "--port", "0"]) == 1
    err = capsys.readouterr().err
    assert f"serve cannot start: store sqlite://{db}" in err and "not a database" in err
    assert "serving" not in err and "Traceback" not in err
