"""docs/alerts.md's Prometheus rules parse, and every metric they use is one CEAP exports."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[1]
SUFFIXES = ("_total", "_bucket", "_sum", "_count", "_created")


def rules() -> dict:
    text = (ROOT / "docs" / "alerts.md").read_text()
    block = text.split("<!-- prometheus-rules -->", 1)[1]
    return yaml.safe_load(block.split("```yaml", 1)[1].split("```", 1)[0])


def exported() -> set[str]:
    """Metric names registered in the code (prometheus_client Counter/Histogram/Gauge)."""
    names = set()
    for path in ROOT.glob("*/**/*.py"):
        if path.parts[len(ROOT.parts)] in {"tests", "bench", ".venv"}:
            continue
        names |= set(re.findall(r'(?:Counter|Histogram|Gauge|Metric)\(\s*"(ceap_\w+)"',
                                path.read_text()))  # fmt: skip
    return names


def test_the_rules_parse_and_use_only_metrics_ceap_exports():
    groups = rules()["groups"]
    alerts = [r for g in groups for r in g["rules"]]
    assert len(alerts) >= 8 and all({"alert", "expr", "annotations"} <= set(r) for r in alerts)
    known = exported()
    assert {"ceap_http_requests", "ceap_dispatch_messages"} <= known
    for rule in alerts:
        used = set(re.findall(r"\bceap_\w+", rule["expr"]))
        assert used, rule["alert"]
        for name in used:
            base = next((name[: -len(s)] for s in SUFFIXES if name.endswith(s)), name)
            assert base in known, f"{rule['alert']}: {name} is not a metric CEAP exports"


def test_promtool_accepts_the_rules(tmp_path):
    """Prometheus' own checker (Debian's prometheus package ships it; CI installs it): the
    expressions are PromQL it parses, durations and labels are valid, names are unique."""
    promtool = shutil.which("promtool")
    if promtool is None:
        pytest.skip("promtool is not installed (apt-get install prometheus); CI installs it")
    path = tmp_path / "ceap.rules.yml"
    path.write_text(yaml.safe_dump(rules()))
    done = subprocess.run([promtool, "check", "rules", str(path)], capture_output=True, text=True)
    assert done.returncode == 0, done.stdout + done.stderr
    assert f"SUCCESS: {sum(len(g['rules']) for g in rules()['groups'])} rules found" in done.stdout


STALLED_TESTS = """
rule_files: [ceap.rules.yml]
evaluation_interval: 5m
tests:
  - name: dead since the dispatcher started (no sent series at all)
    interval: 10m
    input_series:
      - series: 'ceap_dispatch_messages_total{program="reviews", channel="email", status="retry"}'
        values: '0+5x60'
    alert_rule_test:
      - {eval_time: 7h, alertname: CeapDispatchStalled, exp_alerts: [{exp_labels: {severity: page}, exp_annotations: {summary: SUMMARY}}]}
  - name: sending, with some failures
    interval: 10m
    input_series:
      - series: 'ceap_dispatch_messages_total{program="reviews", channel="email", status="retry"}'
        values: '0+5x60'
      - series: 'ceap_dispatch_messages_total{program="reviews", channel="email", status="sent"}'
        values: '0+50x60'
    alert_rule_test:
      - {eval_time: 7h, alertname: CeapDispatchStalled, exp_alerts: []}
"""


def test_dispatch_stalled_fires_for_a_provider_dead_from_the_start(tmp_path):
    """No message ever sent means no ``status="sent"`` series: the rule still fires (a sum
    over nothing is empty, not 0), and stays quiet while sends go through."""
    promtool = shutil.which("promtool")
    if promtool is None:
        pytest.skip("promtool is not installed (apt-get install prometheus); CI installs it")
    (tmp_path / "ceap.rules.yml").write_text(yaml.safe_dump(rules()))
    rule = next(
        r for g in rules()["groups"] for r in g["rules"] if r["alert"] == "CeapDispatchStalled"
    )
    summary = json.dumps(rule["annotations"]["summary"])
    (tmp_path / "stalled.test.yml").write_text(STALLED_TESTS.replace("SUMMARY", summary))
    done = subprocess.run(
        [promtool, "test", "rules", "stalled.test.yml"], capture_output=True, text=True,
        cwd=tmp_path,
    )  # fmt: skip
    assert done.returncode == 0, done.stdout + done.stderr
