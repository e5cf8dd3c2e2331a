"""The dispatch CLI: Prometheus metrics written to a textfile after each pass (cron runs), and
progress lines while it runs."""

from __future__ import annotations

from channels.cli import main
from tests.channels.conftest import NOW


def test_metrics_file_after_a_pass(tmp_path, monkeypatch):
    monkeypatch.setenv("CEAP_HOME", str(tmp_path / "home"))
    out = tmp_path / "ceap.prom"
    configs = tmp_path / "configs"
    configs.mkdir()
    assert main(["--config-dir", str(configs), "--metrics-file", str(out)]) == 0
    text = out.read_text()
    assert "# TYPE ceap_dispatch_messages_total counter" in text or "ceap_dispatch_messages" in text


def test_dispatch_shows_progress_while_it_runs(world, smtp, monkeypatch, capsys):
    monkeypatch.setenv("CEAP_PROGRESS_SECONDS", "0.05")
    monkeypatch.setenv("CEAP_FREQUENCY_CAP", "off")
    smtp.delay = 0.005  # 60 messages: ~0.3 s, several progress lines
    world.seed(60)
    args = ["--store", world.store_spec, "--config-dir", str(world.config_dir),
            "--now", NOW.isoformat(), "--batch-size", "10"]  # fmt: skip
    assert main(args) == 0
    err = capsys.readouterr().err.splitlines()
    lines = [line for line in err if "[dispatch]" in line and "outbox rows handled" in line]
    counts = [int(line.split("s  ")[1].split()[0].replace(",", "")) for line in lines]
    assert len(counts) >= 2 and counts == sorted(counts) and counts[-1] <= 60


def test_a_mistyped_store_path_is_an_error_not_an_empty_store(tmp_path, capsys):
    """dispatch and export read a store a batch run wrote: a path with no database is a
    typo, refused (exit 1) rather than created empty with nothing to do (exit 0)."""
    import run as cli

    missing = tmp_path / "nonexist" / "ceap.db"
    assert cli.main(["dispatch", "--store", f"sqlite://{missing}"]) == 1
    out = ["export", "--date", "2026-11-25", "--output", str(tmp_path / "e")]
    assert cli.main([*out, "--store", f"sqlite://{missing}"]) == 1
    assert capsys.readouterr().err.count(f"no database at {missing}") == 2
    assert not missing.parent.exists()
