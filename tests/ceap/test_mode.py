"""The run's mode (issue 15, item 4): stages ask it for the property they depend on."""

from __future__ import annotations

import pickle
import re
from dataclasses import replace
from datetime import UTC, datetime
from pathlib import Path

from ceap.context import RunContext
from ceap.mode import BATCH, STREAMING

NOW = datetime(2026, 3, 2, tzinfo=UTC)
ROOT = Path(__file__).resolve().parents[2]


def test_a_context_names_its_mode_and_keeps_it_through_pickling_and_replace():
    ctx = RunContext(program="p", now=NOW, mode=STREAMING)
    assert ctx.streaming and ctx.mode.records_outcomes and ctx.mode.ranks_each_batch
    copy = pickle.loads(pickle.dumps(ctx))  # what a Beam worker receives
    assert copy.mode == STREAMING and replace(copy, run_id="r").streaming
    assert RunContext(program="p", now=NOW, streaming=True).mode == STREAMING
    assert RunContext(program="p", now=NOW).mode == BATCH


def test_only_an_endless_run_refreshes_what_it_looked_up():
    assert not BATCH.stale(0.0)  # a batch run loads once per worker
    assert STREAMING.stale(0.0) and not STREAMING.stale(float("inf"))


def test_stages_branch_on_properties_of_the_mode_not_on_a_flag():
    flag = re.compile(r"\b(ctx|context|self\._ctx|self\.context)\.streaming\b")
    offenders = [
        str(path.relative_to(ROOT))
        for package in ("transforms", "pipelines/graph.py")
        for path in (
            [ROOT / package] if package.endswith(".py") else (ROOT / package).rglob("*.py")
        )
        if flag.search(path.read_text())
    ]
    assert offenders == []
