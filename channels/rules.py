"""The outbox rulebook: what happens to a leased row at send time, as pure functions of the
facts a backend read for it (``LeasedRow``: opt-outs, the candidate's state, the customer's
recent contacts and rows in flight) and of the channel's rules. Backends only claim rows,
read these facts and apply the decisions; every backend therefore decides alike.

In order, for each row:
  - the step is no longer configured for the program → suppressed;
  - an opt-out in the registry (all programs / this one, all channels / this one) → suppressed;
  - the candidate is gone, no longer live (consumed: the customer acted) or expired →
    suppressed; but a response consumes the candidate and keeps going the journey steps
    whose ``when:`` asks for what happened (``responded``, ``opened:``, ``clicked:``);
  - the step's ``when:`` condition is not met (DESIGN §9) → suppressed;
  - quiet hours in the customer's time zone → deferred to their end (still pending);
  - the customer's frequency cap on the channel (sent + in flight, rolling window, all
    programs; shadow rows against shadow contacts only) is reached → suppressed.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass
from datetime import datetime, time, timedelta

from channels.schedule import FrequencyCap, quiet_until
from stores.base import iso
from stores.leasing import Decision, LeasedRow


@dataclass(frozen=True)
class ChannelRules:
    """The send-time rules of one program's channel."""

    shadow: bool = False
    quiet: tuple[time, time] | None = None
    cap: FrequencyCap | None = None
    when: str | None = None
    """The step's send-time condition (``responded``, ``not_opened:invite``, ...)."""

    @property
    def after_response(self) -> bool:
        """Whether the step goes on once the customer responded (consumed the candidate)."""
        return self.when is not None and not self.when.startswith("not_")


def suppression(row: LeasedRow, rules: ChannelRules | None, now: datetime) -> str | None:
    """Why the row must not be sent at all (None: it may be, as far as its facts go)."""
    if rules is None:
        return "step no longer configured for the program"
    for prog, chan in row["opt_outs"]:
        if prog in ("*", row["program"]) and chan in ("*", row["channel"]):
            return "opted out"
    if row["cand_status"] is None:
        return "candidate no longer in the store"
    goes_on = row["cand_status"] == "consumed" and rules.after_response
    if row["cand_status"] != "live" and not goes_on:
        return f"candidate {row['cand_status']}"
    if not goes_on and row["expires_at"] <= iso(now):
        return "candidate expired"
    if rules.when is not None and not condition_met(rules.when, row):
        return f"condition not met: {rules.when}"
    return None


def condition_met(when: str, row: LeasedRow) -> bool:
    """``when`` against the row's facts: ``responded`` (a response to the candidate) and the
    engagement events of the candidate's steps (a click counts as an open too: images may
    be blocked, the link was followed)."""
    negate = when.startswith("not_")
    kind, _, step = when.removeprefix("not_").partition(":")
    if kind == "responded":
        met = bool(row.get("responded"))
    else:
        seen = {(s, e) for s, e in row.get("engaged") or []}
        met = (step, kind) in seen or (kind == "opened" and (step, "clicked") in seen)
    return met != negate


def is_shadow(row: LeasedRow, rules: ChannelRules) -> bool:
    return bool(row["shadow"]) or rules.shadow


class Screen:
    """One round's decisions over leased rows, in lease order: rows of one customer in the
    same round count toward their cap as they are let through."""

    def __init__(self, now: datetime) -> None:
        self.now = now
        self._let_through: Counter = Counter()  # (customer, channel, shadow) -> rows this round

    def suppress(self, row: LeasedRow, rules: ChannelRules | None) -> Decision | None:
        """First step: a ``suppress`` decision from the row's own facts, or None."""
        reason = suppression(row, rules, self.now)
        return None if reason is None else (row["rowid"], "suppress", reason)

    def schedule(
        self, row: LeasedRow, rules: ChannelRules, timezone: str | None
    ) -> Decision | None:
        """Second step, for a row not suppressed: ``defer`` in quiet hours (``timezone`` is
        the customer's), ``suppress`` over the frequency cap, else None: send it."""
        if rules.quiet is not None:
            until = quiet_until(self.now, rules.quiet, timezone)
            if until is not None:
                return (row["rowid"], "defer", iso(until))
        reason = self._capped(row, rules) if rules.cap is not None else None
        return None if reason is None else (row["rowid"], "suppress", reason)

    def _capped(self, row: LeasedRow, rules: ChannelRules) -> str | None:
        shadow = is_shadow(row, rules)
        key = (row["customer_id"], row["channel"], shadow)
        times, in_flight = (
            (row["shadow_times"], row["shadow_in_flight"]) if shadow
            else (row["sent_times"], row["in_flight"])
        )  # fmt: skip
        since = iso(self.now - rules.cap.window)
        recent = in_flight + sum(t >= since for t in times)
        capped = recent + self._let_through[key] >= rules.cap.max
        self._let_through[key] += 1
        return f"frequency cap: {rules.cap.max} per {days(rules.cap.window)}" if capped else None


def days(window: timedelta) -> str:
    """A window as the reason text shows it: ``30d``, else seconds."""
    return (
        f"{window.days}d"
        if window.days and not window.seconds
        else f"{window.total_seconds():.0f}s"
    )
