"""The report's charts as PNG bytes, drawn with matplotlib's Agg backend (no display needed).

Each function takes the plain numbers of ``reports.data.ReportData`` and returns PNG bytes,
or None when there is nothing to draw (the report then says so instead of a blank chart).
"""

from __future__ import annotations

import io
from typing import Any

import matplotlib

matplotlib.use("Agg")  # before pyplot: headless, deterministic

import matplotlib.pyplot as plt  # noqa: E402

COLORS = ["#3366cc", "#dc3912", "#ff9900", "#109618", "#990099", "#0099c6", "#dd4477"]


def _png(fig) -> bytes:
    buffer = io.BytesIO()
    fig.tight_layout()
    fig.savefig(buffer, format="png", dpi=96)
    plt.close(fig)
    return buffer.getvalue()


def funnel(stages: list[dict[str, Any]]) -> bytes | None:
    """Rows left after each stage, as horizontal bars, top to bottom in pipeline order."""
    if not stages:
        return None
    labels = [s["stage"] + (f": {s['detail']}" if s["detail"] else "") for s in stages]
    labels = [label if len(label) <= 48 else label[:45] + "..." for label in labels]
    values = [s["remaining"] for s in stages]
    fig, ax = plt.subplots(figsize=(8, 0.45 * len(stages) + 1.2))
    ax.barh(range(len(values)), values, color=COLORS[0])
    ax.set_yticks(range(len(values)), labels, fontsize=8)
    ax.invert_yaxis()
    for i, v in enumerate(values):
        ax.text(v, i, f" {v:,}", va="center", fontsize=8)
    ax.set_xlabel("rows remaining")
    ax.set_title("Funnel")
    return _png(fig)


def score_histograms(scores: dict[str, list[float]]) -> bytes | None:
    """Score distribution per experiment arm, overlaid (density, so arms of different sizes
    compare)."""
    if not any(scores.values()):
        return None
    fig, ax = plt.subplots(figsize=(8, 3.5))
    for i, (arm, values) in enumerate(sorted(scores.items())):
        if values:
            ax.hist(values, bins=30, alpha=0.55, density=True, color=COLORS[i % len(COLORS)],
                    label=f"{arm} (n={len(values):,})")  # fmt: skip
    ax.set_xlabel("score")
    ax.set_ylabel("density")
    ax.set_title("Score distribution per arm")
    ax.legend(fontsize=8)
    return _png(fig)


def outbox_status(rows: list[dict[str, Any]]) -> bytes | None:
    """Outbox rows per channel, stacked by status."""
    if not rows:
        return None
    channels = sorted({r["channel"] for r in rows})
    statuses = sorted({r["status"] for r in rows})
    counts = {(r["channel"], r["status"]): r["rows"] for r in rows}
    fig, ax = plt.subplots(figsize=(8, 3))
    bottom = [0] * len(channels)
    for i, status in enumerate(statuses):
        values = [counts.get((ch, status), 0) for ch in channels]
        ax.bar(channels, values, bottom=bottom, label=status, color=COLORS[i % len(COLORS)])
        bottom = [b + v for b, v in zip(bottom, values, strict=True)]
    ax.set_ylabel("outbox rows")
    ax.set_title("Delivery status per channel")
    ax.legend(fontsize=8)
    return _png(fig)


def rates(rows: list[dict[str, Any]], key: str, title: str) -> bytes | None:
    """Response rate (%) per ``key`` (an arm or a channel)."""
    if not rows:
        return None
    labels = [str(r[key]) for r in rows]
    values = [100.0 * (r["response_rate"] or 0.0) for r in rows]
    fig, ax = plt.subplots(figsize=(8, 2.8))
    ax.bar(labels, values, color=COLORS[3])
    for i, v in enumerate(values):
        ax.text(i, v, f"{v:.1f}%", ha="center", va="bottom", fontsize=8)
    ax.set_ylim(0, max(1.0, max(values) * 1.15))
    ax.set_ylabel("response rate (%)")
    ax.set_title(title)
    return _png(fig)


def attribution(rows: list[dict[str, Any]]) -> bytes | None:
    """Responses credited per channel: last touch and multi-touch (equal split)."""
    if not rows:
        return None
    channels = [r["channel"] for r in rows]
    x = range(len(channels))
    fig, ax = plt.subplots(figsize=(8, 2.8))
    ax.bar([i - 0.2 for i in x], [r["last_touch"] for r in rows], 0.4, label="last touch",
           color=COLORS[0])  # fmt: skip
    ax.bar([i + 0.2 for i in x], [r["multi_touch"] for r in rows], 0.4, label="multi-touch",
           color=COLORS[2])  # fmt: skip
    ax.set_xticks(list(x), channels)
    ax.set_ylabel("responses credited")
    ax.set_title("Attribution per channel")
    ax.legend(fontsize=8)
    return _png(fig)


def engagement(rows: list[dict[str, Any]], stages: tuple[str, ...]) -> bytes | None:
    """Per channel and arm, the share of its sent candidates at each stage (sent = 100%), as
    grouped bars, so arms of different sizes compare. None when nothing was sent (shadow
    rehearsals reach nobody: they have no stages)."""
    rows = [r for r in rows if r["sent"]]
    if not rows:
        return None
    width = 0.8 / len(rows)
    fig, ax = plt.subplots(figsize=(8, 3.2))
    for i, r in enumerate(rows):
        values = [100.0 * r[s] / r["sent"] for s in stages]
        xs = [j - 0.4 + width * (i + 0.5) for j in range(len(stages))]
        ax.bar(xs, values, width, color=COLORS[i % len(COLORS)],
               label=f"{r['channel']} / {r['treatment']} (n={r['sent']:,})")  # fmt: skip
    ax.set_xticks(range(len(stages)), stages)
    ax.set_ylim(0, 105)
    ax.set_ylabel("% of sent candidates")
    ax.set_title("Engagement per channel and arm")
    ax.legend(fontsize=8)
    return _png(fig)
