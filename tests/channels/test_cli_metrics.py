"""The dispatcher's Prometheus metrics: written to a textfile after each pass (cron runs)."""

from __future__ import annotations

from channels.cli import main


def test_metrics_file_after_a_pass(tmp_path, monkeypatch):
    monkeypatch.setenv("CEAP_HOME", str(tmp_path / "home"))
    out = tmp_path / "ceap.prom"
    configs = tmp_path / "configs"
    configs.mkdir()
    assert main(["--config-dir", str(configs), "--metrics-file", str(out)]) == 0
    text = out.read_text()
    assert "# TYPE ceap_dispatch_messages_total counter" in text or "ceap_dispatch_messages" in text
