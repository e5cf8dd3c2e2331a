"""The campaign report: numbers from a store with known runs, candidates, outbox rows and
responses; the HTML carries them and its charts as embedded PNGs; headless Chromium (when
installed) renders the charts."""

from __future__ import annotations

import base64
import json
import re
import subprocess
from pathlib import Path

import pyarrow as pa
import pytest

from reports.data import funnel_stages, load
from reports.html import main, render
from stores.base import CANDIDATE_COLUMNS
from stores.spec import open_store

DAY = "2026-11-01"
FUNNEL = {
    "program": "reviews", "read": 1000, "dead_letters": {"candidates": 10},
    "filtered": [{"filter": "trust", "reason": "trust score under 0.3", "rows": 300},
                 {"filter": "dedup", "reason": "already acted on this subject", "rows": 90}],
    "below_min_score": 200, "ranked_out": {"top_n": 396}, "candidates": 4, "scored": {},
    "stored": 4, "queued": [{"channel": "email", "status": "pending", "rows": 4}],
    "adds_up": True, "arms": {},
}  # fmt: skip


def _candidate(customer: str, arm: str, score: float, created: str = f"{DAY}T01:00:00Z") -> dict:
    return {
        "program": "reviews", "customer_id": customer, "subject_type": "product",
        "subject_id": "P", "action": "review", "context": "{}", "score": score,
        "model_id": f"m_{arm}", "treatment": arm, "created_at": created,
        "expires_at": "2026-12-01T00:00:00Z", "deliver_after": created, "status": "live",
    }  # fmt: skip


@pytest.fixture
def spec(tmp_path) -> str:
    """Four candidates on DAY (two arms) and one the day before. C1 was reached by email,
    shadowed on in-app (a rehearsal: reached nobody), and responded; C2 by email only and
    responded; C3 was shadowed on email after it responded (unattributed); C4 was
    suppressed, no response."""
    spec = "sqlite:///" + str(tmp_path / "ceap.db")
    store = open_store(spec)
    rows = [
        _candidate("C1", "control", 0.2), _candidate("C2", "propensity", 0.6),
        _candidate("C3", "propensity", 0.7), _candidate("C4", "propensity", 0.8),
        _candidate("C0", "control", 0.1, "2026-10-31T01:00:00Z"),
    ]  # fmt: skip
    store.upsert_candidates(pa.table({c: [r[c] for r in rows] for c in CANDIDATE_COLUMNS}))
    con = store.connection
    outbox = [  # customer, channel, status, sent_at, updated_at
        ("C1", "email", "sent", f"{DAY}T10:00:00Z", f"{DAY}T10:00:00Z"),
        ("C1", "in_app", "shadowed", None, f"{DAY}T11:00:00Z"),
        ("C2", "email", "sent", f"{DAY}T10:00:00Z", f"{DAY}T10:00:00Z"),
        ("C3", "email", "shadowed", None, f"{DAY}T20:00:00Z"),
        ("C4", "email", "suppressed", None, f"{DAY}T10:00:00Z"),
        ("C0", "email", "sent", "2026-10-31T10:00:00Z", "2026-10-31T10:00:00Z"),
    ]
    con.executemany(
        "INSERT INTO outbox (program, customer_id, subject_id, channel, step, send_after, status, "
        "idempotency_key, sent_at, updated_at, created_at) VALUES ('reviews', ?, 'P', ?, ?, ?, ?, ?, ?, ?, ?)",
        [(c, ch, ch, DAY, st, f"{c}{ch}", sent, upd, DAY) for c, ch, st, sent, upd in outbox],
    )
    con.executemany(
        "INSERT INTO responses VALUES ('reviews', ?1, 'P', 'null', ?2, ?1)",
        [("C1", f"{DAY}T12:00:00Z"), ("C2", f"{DAY}T12:00:00Z"), ("C3", f"{DAY}T12:00:00Z"),
         ("C0", "2026-10-31T12:00:00Z")],
    )  # fmt: skip
    for run_id, started, funnel in [
        ("old", "2026-10-31T00:00:00Z", {**FUNNEL, "read": 7}),
        ("new", f"{DAY}T00:00:00Z", FUNNEL),
        ("failed", f"{DAY}T05:00:00Z", None),
    ]:
        store.record_run({"run_id": run_id, "program": "reviews", "mode": "batch",
                          "started_at": started, "finished_at": started,
                          "status": "ok" if funnel else "failed", "funnel": funnel})  # fmt: skip
    store.close()
    return spec


def test_funnel_stages_remove_in_order_down_to_the_candidates():
    stages = funnel_stages(FUNNEL)
    assert [(s["stage"], s["removed"], s["remaining"]) for s in stages] == [
        ("read", 0, 1000), ("dead letter", 10, 990), ("filter trust", 300, 690),
        ("filter dedup", 90, 600), ("below min_score", 200, 400), ("ranked out", 396, 4),
    ]  # fmt: skip
    assert stages[-1]["remaining"] == FUNNEL["candidates"]


def test_report_numbers_for_a_day(spec):
    store = open_store(spec)
    data = load(store, "reviews", DAY, "now")
    store.close()

    assert data.run["run_id"] == "new" and [r["run_id"] for r in data.runs] == ["failed", "new"]
    assert data.candidates == 4
    arms = {a["treatment"]: (a["candidates"], a["responses"]) for a in data.arms}
    assert arms == {"propensity": (3, 2), "control": (1, 1)}
    assert sorted(data.scores["propensity"]) == [0.6, 0.7, 0.8]
    assert {(o["channel"], o["status"]): o["rows"] for o in data.outbox} == {
        ("email", "sent"): 2, ("email", "shadowed"): 1, ("email", "suppressed"): 1,
        ("in_app", "shadowed"): 1,
    }  # fmt: skip
    # Shadowed rows reached nobody: counted apart, never as reached nor credited.
    channels = {c["channel"]: (c["touched"], c["responses"], c["shadowed"]) for c in data.channels}
    assert channels == {"email": (2, 2, 1), "in_app": (0, 0, 1)}
    assert (data.responses, data.attributed, data.multi_touch_responses) == (3, 2, 0)
    attribution = {a["channel"]: (a["last_touch"], a["multi_touch"]) for a in data.attribution}
    assert attribution == {"email": (2, 2.0)}
    # Per channel and arm (no engagement events here): sent, responded, shadowed apart.
    engagement = {(e["channel"], e["treatment"]): (e["sent"], e["delivered"], e["responded"],
                   e["shadowed"]) for e in data.engagement}  # fmt: skip
    assert engagement == {
        ("email", "control"): (1, 0, 1, 0), ("email", "propensity"): (1, 0, 1, 1),
        ("in_app", "control"): (0, 0, 0, 1),
    }  # fmt: skip


def test_report_without_a_day_covers_every_candidate(spec):
    store = open_store(spec)
    data = load(store, "reviews", None, "now")
    store.close()
    assert data.candidates == 5 and data.run["run_id"] == "new" and data.responses == 4


def test_html_carries_the_funnel_and_embedded_pngs(spec, tmp_path, capsys):
    out = tmp_path / "r.html"
    assert main(["--program", "reviews", "--date", DAY, "--output", str(out),
                 "--store", spec]) == 0  # fmt: skip
    html = out.read_text()
    for text in (
        "1,000",
        "trust score under 0.3",
        "already acted on this subject",
        "990",
        "adds up",
    ):
        assert text in html
    images = re.findall(r'src="data:image/png;base64,([^"]+)"', html)
    assert len(images) == 7  # the engagement chart: email rows were sent
    assert all(base64.b64decode(i).startswith(b"\x89PNG") for i in images)
    embedded = json.loads(re.search(r'id="ceap-report-data">(.*?)</script>', html, re.S).group(1))
    assert embedded["run"]["funnel"]["read"] == 1000 and embedded["responses"] == 3
    assert "http://" not in html and "https://" not in html  # self-contained
    assert main(["--program", "reviews", "--date", "01/11/2026"]) == 2


def test_an_empty_store_still_renders(tmp_path):
    store = open_store("sqlite:///" + str(tmp_path / "empty.db"))
    html = render(load(store, "reviews", None, "now"))
    store.close()
    assert "No finished run recorded" in html and "(no data)" in html


CHROMIUM = Path("/usr/bin/chromium")
FLAGS = [
    "--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
    "--disable-component-update", "--disable-sync", "--no-first-run",
]  # fmt: skip


@pytest.mark.skipif(not CHROMIUM.exists(), reason="headless Chromium (/usr/bin/chromium) not installed: apt-get install -y chromium")  # fmt: skip
def test_chromium_renders_the_charts(spec, tmp_path):
    report = tmp_path / "r.html"
    assert main(["--program", "reviews", "--date", DAY, "--output", str(report), "--store", spec]) == 0  # fmt: skip
    # A copy that writes each image's decoded size into the DOM once loaded.
    probe = tmp_path / "probe.html"
    probe.write_text(
        report.read_text().replace(
            "</body>",
            "<script>window.addEventListener('load', () => { document.body.dataset.sizes = "
            "[...document.images].map(i => i.naturalWidth + 'x' + i.naturalHeight).join(' '); "
            "});</script></body>",
        )
    )

    def chromium(*args: str) -> subprocess.CompletedProcess:
        profile = tmp_path / f"profile-{len(list(tmp_path.glob('profile-*')))}"
        return subprocess.run(
            [str(CHROMIUM), *FLAGS, f"--user-data-dir={profile}", *args],
            capture_output=True, text=True, timeout=120,
        )  # fmt: skip

    dom = chromium("--virtual-time-budget=5000", "--dump-dom", probe.as_uri())
    sizes = re.search(r'data-sizes="([^"]*)"', dom.stdout)
    assert sizes, dom.stderr[-2000:]
    dims = [tuple(map(int, s.split("x"))) for s in sizes.group(1).split()]
    assert len(dims) == 7 and all(w > 0 and h > 0 for w, h in dims)

    shot = tmp_path / "shot.png"
    chromium("--window-size=1000,1600", f"--screenshot={shot}", report.as_uri())
    import matplotlib.image

    pixels = matplotlib.image.imread(shot)
    blue = (abs(pixels[..., 0] - 0x33 / 255) < 0.05) & (abs(pixels[..., 2] - 0xCC / 255) < 0.05)
    assert blue.sum() > 500  # the funnel's bars were painted
