"""The numbers of a program's report, computed by DuckDB over the store's tables (as Arrow).

Scope: the program's candidates (those created on ``day`` when given: a cohort) and what
became of them: their outbox rows, the engagement events about the rows that were sent, and
the responses to them. The funnel is the latest run's (on ``day`` when given), as recorded in
the ``runs`` table. Engagement events are read only from a store with the delivery feedback
role (stores/ports.py); any other store reports none.

Touches and attribution. A *touch* is an outbox row that reached the customer: ``sent`` (at
``sent_at``), or a ``clicked`` event about a sent row (at the event's ``at``, on its channel:
a click on the subject shows that channel at work after its send; the per-channel ``touched``
counts sends only). Events match their row by idempotency key. A ``shadowed``
row is a rehearsal that reached nobody: it is counted apart, per channel (``shadowed``), and
never as reached nor credited with a response. A response is attributed to the last channel
that touched the same (customer, subject) at or before the response (*last touch*);
*multi-touch* credit splits each response equally among the distinct channels that touched it
before; a response with no touch is *unattributed*.

Engagement per channel and arm (DESIGN §8): distinct candidates (customer, subject) at each
stage of sent -> delivered -> opened -> clicked -> responded. ``sent``: a sent row on the
channel. ``delivered``, ``opened``, ``clicked``: an event of that kind, or of a later stage,
about one of those rows (an open proves delivery, a click the open: providers rarely report
deliveries of SMS or in-app messages, and mail clients that block images never report opens).
``responded``: the candidate's first response came at or after its first send on the channel.
``bounced``, ``complained``, ``unsubscribed``: candidates with such an event about a sent row.
``shadowed``: candidates the channel only rehearsed, counted apart (never in the stages).
The arm is the candidate's ``treatment`` (its ``model_id`` when it has none).
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from datetime import date, timedelta
from typing import Any

import duckdb
import pyarrow as pa

from reports.steps import step_rows

TOUCH_TIME = "CASE WHEN o.status = 'sent' THEN o.sent_at ELSE o.updated_at END"


@dataclass
class ReportData:
    program: str
    day: str | None
    generated_at: str
    run: dict[str, Any] | None = None
    """The run whose funnel is shown: run_id, started_at, status, funnel (Funnel.as_dict())."""
    runs: list[dict[str, Any]] = field(default_factory=list)
    funnel: list[dict[str, Any]] = field(default_factory=list)
    """Stages in order: {stage, detail, removed, remaining}; the first is ``read``."""
    candidates: int = 0
    arms: list[dict[str, Any]] = field(default_factory=list)
    """Per model/arm: model_id, treatment, candidates, mean/p50/p90 score, responses, rate."""
    scores: dict[str, list[float]] = field(default_factory=dict)
    """Arm label -> the scores of its candidates (for the histogram)."""
    outbox: list[dict[str, Any]] = field(default_factory=list)
    """Per channel and status: rows."""
    channels: list[dict[str, Any]] = field(default_factory=list)
    """Per channel: touched (candidates reached: sent), responses after a touch, rate, and
    shadowed (candidates a shadow channel rehearsed: reached nobody, counted apart)."""
    engagement: list[dict[str, Any]] = field(default_factory=list)
    """Per channel and arm: program, channel, treatment, then candidates at each stage (sent,
    delivered, opened, clicked, responded), shadowed apart, and bounced, complained,
    unsubscribed (see the module docstring)."""
    attribution: list[dict[str, Any]] = field(default_factory=list)
    """Per channel: last_touch responses and share, multi_touch credit and share."""
    steps: list[dict[str, Any]] = field(default_factory=list)
    """Per journey step: its plan (channel, timing, when), rows by status, suppression and
    failure reasons, responded after it (reports/steps.py)."""
    responses: int = 0
    attributed: int = 0
    multi_touch_responses: int = 0
    """Responses touched by two or more channels before they happened."""

    def as_json(self) -> str:
        out = asdict(self)
        out.pop("scores")
        return json.dumps(out, default=str, sort_keys=True)


def _rows(con: duckdb.DuckDBPyConnection, sql: str, params: list | None = None) -> list[dict]:
    cur = con.execute(sql, params or [])
    names = [d[0] for d in cur.description]
    return [dict(zip(names, r, strict=True)) for r in cur.fetchall()]


def funnel_stages(funnel: dict[str, Any]) -> list[dict[str, Any]]:
    """A run's funnel (``Funnel.as_dict()``) as stages in pipeline order, each with the rows it
    removed and the rows left: read, dead letters, each filter's reasons, below min_score,
    ranked out; what is left at the end is the candidates."""
    remaining = int(funnel.get("read", 0))
    stages = [{"stage": "read", "detail": "", "removed": 0, "remaining": remaining}]

    def step(stage: str, detail: str, n: int) -> None:
        nonlocal remaining
        remaining -= int(n)
        stages.append({"stage": stage, "detail": detail, "removed": int(n), "remaining": remaining})

    for where, n in sorted((funnel.get("dead_letters") or {}).items()):
        step("dead letter", where, n)
    for f in funnel.get("filtered") or []:
        step(f"filter {f['filter']}", f["reason"], f["rows"])
    step("below min_score", "", funnel.get("below_min_score", 0))
    for reason, n in sorted((funnel.get("ranked_out") or {}).items()):
        step("ranked out", reason, n)
    return stages


def load(
    store, program: str, day: str | None, generated_at: str, plan: list | None = None
) -> ReportData:
    """Reads ``store`` (a CandidateStore) and computes the report of ``program`` (``plan``:
    its journey steps, ``reports.steps.plan_of``, when its config could be read)."""
    con = duckdb.connect()
    for name, arrow in _tables(store).items():
        con.register(f"{name}_all", _with_columns(name, arrow))
    low, high = (day, (date.fromisoformat(day) + timedelta(days=1)).isoformat()) if day else ("", "~")  # fmt: skip
    _scope(con, program, low, high)
    data = ReportData(program=program, day=day, generated_at=generated_at)
    _runs(con, data, program, low, high)
    data.candidates = con.execute("SELECT count(*) FROM cohort").fetchone()[0]
    data.arms = _rows(con, """
        SELECT c.model_id, coalesce(c.treatment, c.model_id) AS treatment, count(*) AS candidates,
               avg(c.score) AS mean_score, median(c.score) AS p50_score,
               quantile_cont(c.score, 0.9) AS p90_score, count(a.customer_id) AS responses,
               count(a.customer_id) / count(*) AS response_rate
        FROM cohort c LEFT JOIN answered a USING (customer_id, subject_id)
        GROUP BY ALL ORDER BY candidates DESC, 1""")  # fmt: skip
    for arm in _rows(con, "SELECT coalesce(treatment, model_id, '?') AS arm, list(score) AS s "
                     "FROM cohort WHERE score IS NOT NULL GROUP BY ALL ORDER BY 1"):  # fmt: skip
        data.scores[str(arm["arm"])] = [float(x) for x in arm["s"]]
    data.outbox = _rows(con, """
        SELECT o.channel, o.status, count(*) AS rows FROM outbox_all o
        JOIN cohort c USING (customer_id, subject_id) WHERE o.program = ?
        GROUP BY ALL ORDER BY 1, 2""", [program])  # fmt: skip
    _channels(con, data, program)
    _engagement(con, data, program)
    _attribution(con, data)
    data.steps = step_rows(con, program, plan)
    return data


def _tables(store) -> dict[str, pa.Table]:
    """The store's tables the report reads; engagement events only from a store that keeps
    them (the delivery feedback role), else none."""
    from stores.ports import Role

    names = ["candidates", "outbox", "responses", "runs"]
    if Role.FEEDBACK in getattr(store, "roles", ()):
        names.append("engagement_events")
    tables = {n: store.table(n) for n in names}
    tables.setdefault("engagement_events", pa.table({}))
    return tables


def _scope(con, program: str, low: str, high: str) -> None:
    """The cohort, its sent rows (touches, with the arm), the events about those rows, and
    each candidate's first response, as temporary tables."""
    con.execute(
        "CREATE TEMP TABLE cohort AS SELECT * FROM candidates_all "
        "WHERE program = ? AND created_at >= ? AND created_at < ?",
        [program, low, high],
    )
    con.execute(
        "CREATE TEMP TABLE touches AS SELECT o.customer_id, o.subject_id, o.channel, o.status, "
        f"{TOUCH_TIME} AS touched_at, o.idempotency_key, coalesce(c.treatment, c.model_id) AS arm "
        "FROM outbox_all o JOIN cohort c USING (customer_id, subject_id) "
        "WHERE o.program = ? AND o.status = 'sent'",
        [program],
    )
    con.execute(
        "CREATE TEMP TABLE engaged AS SELECT t.customer_id, t.subject_id, t.channel, t.arm, "
        "e.event, e.at FROM engagement_events_all e JOIN touches t "
        "ON t.idempotency_key = e.idempotency_key WHERE e.program = ?",
        [program],
    )
    con.execute(
        "CREATE TEMP TABLE answered AS SELECT r.customer_id, r.subject_id, min(r.created_at) AS "
        "responded_at FROM responses_all r JOIN cohort c USING (customer_id, subject_id) "
        "WHERE r.program = ? GROUP BY ALL",
        [program],
    )


def _channels(con, data: ReportData, program: str) -> None:
    data.channels = _rows(con, """
        SELECT t.channel, count(*) AS touched, count(a.customer_id) AS responses,
               count(a.customer_id) / count(*) AS response_rate
        FROM (SELECT customer_id, subject_id, channel, min(touched_at) AS first_touch
              FROM touches GROUP BY ALL) t
        LEFT JOIN answered a ON a.customer_id = t.customer_id AND a.subject_id = t.subject_id
             AND a.responded_at >= t.first_touch
        GROUP BY ALL ORDER BY 1""")  # fmt: skip
    shadowed = dict(con.execute("""
        SELECT o.channel, count(DISTINCT (o.customer_id, o.subject_id)) FROM outbox_all o
        JOIN cohort c USING (customer_id, subject_id) WHERE o.program = ? AND o.status = 'shadowed'
        GROUP BY ALL""", [program]).fetchall())  # fmt: skip
    reached = {c["channel"] for c in data.channels}
    data.channels += [
        {"channel": ch, "touched": 0, "responses": 0, "response_rate": None}
        for ch in sorted(set(shadowed) - reached)
    ]
    for c in data.channels:
        c["shadowed"] = int(shadowed.get(c["channel"], 0))


STAGES = ("sent", "delivered", "opened", "clicked", "responded")
COMPLAINTS = ("bounced", "complained", "unsubscribed")


def _engagement(con, data: ReportData, program: str) -> None:
    """Per channel and arm: candidates at each stage, shadowed apart, and complaints."""
    rows = _rows(con, """
        WITH reached AS (
            SELECT channel, arm, customer_id, subject_id, min(touched_at) AS first_touch
            FROM touches GROUP BY ALL),
        seen AS (
            SELECT channel, customer_id, subject_id,
                   bool_or(event IN ('delivered', 'opened', 'clicked')) AS delivered,
                   bool_or(event IN ('opened', 'clicked')) AS opened,
                   bool_or(event = 'clicked') AS clicked, bool_or(event = 'bounced') AS bounced,
                   bool_or(event = 'complained') AS complained,
                   bool_or(event = 'unsubscribed') AS unsubscribed
            FROM engaged GROUP BY ALL)
        SELECT r.channel, r.arm AS treatment, count(*) AS sent,
               count(*) FILTER (WHERE s.delivered) AS delivered,
               count(*) FILTER (WHERE s.opened) AS opened,
               count(*) FILTER (WHERE s.clicked) AS clicked, count(a.customer_id) AS responded,
               count(*) FILTER (WHERE s.bounced) AS bounced,
               count(*) FILTER (WHERE s.complained) AS complained,
               count(*) FILTER (WHERE s.unsubscribed) AS unsubscribed
        FROM reached r LEFT JOIN seen s USING (channel, customer_id, subject_id)
        LEFT JOIN answered a ON a.customer_id = r.customer_id AND a.subject_id = r.subject_id
             AND a.responded_at >= r.first_touch
        GROUP BY ALL""")  # fmt: skip
    shadowed = {
        (ch, arm): n
        for ch, arm, n in con.execute("""
            SELECT o.channel, coalesce(c.treatment, c.model_id),
                   count(DISTINCT (o.customer_id, o.subject_id)) FROM outbox_all o
            JOIN cohort c USING (customer_id, subject_id)
            WHERE o.program = ? AND o.status = 'shadowed' GROUP BY ALL""", [program]).fetchall()
    }  # fmt: skip
    by_key = {(r["channel"], r["treatment"]): r for r in rows}
    for key in set(shadowed) - set(by_key):
        by_key[key] = dict(channel=key[0], treatment=key[1], **dict.fromkeys(STAGES + COMPLAINTS, 0))  # fmt: skip
    data.engagement = [
        {"program": program, **by_key[key], "shadowed": int(shadowed.get(key, 0))}
        for key in sorted(by_key, key=lambda k: (str(k[0]), str(k[1])))
    ]


def _with_columns(name: str, arrow: pa.Table) -> pa.Table:
    """Backends differ in the internal columns they keep: the ones read here are ensured."""
    needed = {
        "candidates": ["program", "customer_id", "subject_id", "score", "model_id", "treatment",
                       "created_at", "status"],
        "outbox": ["program", "customer_id", "subject_id", "channel", "status", "sent_at",
                   "updated_at", "idempotency_key", "step", "reason"],
        "engagement_events": ["program", "customer_id", "subject_id", "channel",
                              "idempotency_key", "event", "at"],
        "responses": ["program", "customer_id", "subject_id", "created_at"],
        "runs": ["run_id", "program", "mode", "started_at", "finished_at", "status", "funnel"],
    }[name]  # fmt: skip
    for column in needed:
        if column not in arrow.column_names:
            typ = pa.float64() if column == "score" else pa.string()
            arrow = arrow.append_column(column, pa.nulls(arrow.num_rows, typ))
    return arrow


def _runs(con, data: ReportData, program: str, low: str, high: str) -> None:
    runs = _rows(con, """
        SELECT run_id, mode, started_at, finished_at, status, funnel FROM runs_all
        WHERE program = ? AND started_at >= ? AND started_at < ?
        ORDER BY started_at DESC, run_id DESC""", [program, low, high])  # fmt: skip
    for r in runs:
        r["funnel"] = json.loads(r["funnel"]) if r["funnel"] else None
    data.runs = [{k: v for k, v in r.items() if k != "funnel"} for r in runs]
    chosen = next((r for r in runs if r["status"] == "ok" and r["funnel"]), None)
    if chosen is not None:
        data.run = chosen
        data.funnel = funnel_stages(chosen["funnel"])


def _attribution(con, data: ReportData) -> None:
    per_response = _rows(con, """
        SELECT a.customer_id, a.subject_id,
               arg_max(t.channel, t.touched_at || ' ' || t.channel) AS last_channel,
               list(DISTINCT t.channel) FILTER (WHERE t.channel IS NOT NULL) AS channels
        FROM answered a LEFT JOIN (
            SELECT customer_id, subject_id, channel, touched_at FROM touches UNION ALL
            SELECT customer_id, subject_id, channel, "at" FROM engaged WHERE event = 'clicked') t
             ON t.customer_id = a.customer_id
             AND t.subject_id = a.subject_id AND t.touched_at <= a.responded_at
        GROUP BY ALL""")  # fmt: skip
    data.responses = len(per_response)
    last: dict[str, int] = {}
    credit: dict[str, float] = {}
    for r in per_response:
        channels = sorted(r["channels"] or [])
        if not channels:
            continue
        data.attributed += 1
        data.multi_touch_responses += len(channels) > 1
        last[r["last_channel"]] = last.get(r["last_channel"], 0) + 1
        for ch in channels:
            credit[ch] = credit.get(ch, 0.0) + 1.0 / len(channels)
    total = data.attributed or 1
    data.attribution = [
        {
            "channel": ch, "last_touch": last.get(ch, 0), "last_touch_share": last.get(ch, 0) / total,
            "multi_touch": round(credit.get(ch, 0.0), 6), "multi_touch_share": credit.get(ch, 0.0) / total,
        }
        for ch in sorted(set(last) | set(credit))
    ]  # fmt: skip
