"""The report per journey step (DESIGN §9): for each step of the program, what became of its
outbox rows (sent, shadowed, suppressed by reason, failed, still pending or waiting) and how
many candidates responded after the step reached them; with the program's step plan (from
its config: ``after``, ``at``, ``when``) when it can be read, for the journey picture."""

from __future__ import annotations

from typing import Any

from ceap.durations import format_duration

STATUSES = ("sent", "shadowed", "suppressed", "failed", "pending", "waiting")


def plan_of(program: Any) -> list[dict[str, Any]]:
    """The steps of a ProgramConfig as plain data: name, channel and how each is timed."""
    out = []
    for c in program.channels:
        if c.after is not None:
            timing = f"{_signed(c.after.delay)} after {c.after.step}"
        elif c.at is not None:
            timing = f"at {c.at.column} {_signed(c.at.offset)}"
        else:
            timing = f"{_signed(c.delay)} after the event"
        if c.send_at:
            timing += f", {c.send_at} local"
        out.append({"step": c.step, "channel": c.type, "after": c.after.step if c.after else None,
                    "timing": timing, "when": c.when or "always"})  # fmt: skip
    return out


def _signed(value: Any) -> str:
    text = format_duration(value)
    return text if text.startswith("-") else "+" + text


def step_rows(con: Any, program: str, plan: list[dict[str, Any]] | None) -> list[dict[str, Any]]:
    """Per step, in the plan's order (then any other step the store holds): rows by status,
    the suppression reasons, and candidates that responded at or after the step's send."""
    counts = con.execute(
        """SELECT coalesce(o.step, o.channel) AS step, any_value(o.channel) AS channel, o.status,
                  o.reason, count(*) FROM outbox_all o JOIN cohort c USING (customer_id, subject_id)
           WHERE o.program = ? GROUP BY 1, 3, 4""",
        [program],
    ).fetchall()
    responded = dict(con.execute(
        """SELECT coalesce(o.step, o.channel), count(DISTINCT (o.customer_id, o.subject_id))
           FROM outbox_all o JOIN cohort c USING (customer_id, subject_id)
           JOIN answered a USING (customer_id, subject_id)
           WHERE o.program = ? AND o.status = 'sent' AND a.responded_at >= o.sent_at
           GROUP BY 1""",
        [program],
    ).fetchall())  # fmt: skip
    steps: dict[str, dict[str, Any]] = {
        p["step"]: {**p, **dict.fromkeys(STATUSES, 0), "reasons": {}} for p in plan or []
    }
    for step, channel, status, reason, n in counts:
        row = steps.setdefault(step, {"step": step, "channel": channel, "after": None,
                                      "timing": "", "when": "", **dict.fromkeys(STATUSES, 0),
                                      "reasons": {}})  # fmt: skip
        row[status] = row.get(status, 0) + n
        if status in ("suppressed", "failed") and reason:
            row["reasons"][reason] = row["reasons"].get(reason, 0) + n
    for step, row in steps.items():
        row["responded"] = int(responded.get(step, 0))
        row["reasons"] = dict(sorted(row["reasons"].items(), key=lambda kv: -kv[1]))
    return list(steps.values())
