"""Journeys (DESIGN §9): which steps wait for which, and what becomes of a waiting step
once its parent is settled. A parent sent or shadowed at T makes its children due at
``T + after.delay`` (then ``send_at`` in the customer's zone); a parent suppressed or
failed ends its children ``suppressed``, naming it, and theirs in turn. A dispatcher
releases children right after it records their parent; when it starts, it also settles
``orphans``: children still waiting although their parent has ended."""

from __future__ import annotations

from collections.abc import Iterable
from datetime import datetime
from typing import Any

from channels.schedule import next_local_time
from configs.schema import ChannelConfig, ProgramConfig
from stores.base import iso

ENDED = ("suppressed", "failed")
GOES_ON = ("sent", "shadowed")


class Journeys:
    """The step graph of the dispatched programs."""

    def __init__(self, programs: Iterable[ProgramConfig]) -> None:
        self.children: dict[tuple[str, str], list[ChannelConfig]] = {}
        for p in programs:
            for step in p.channels:
                if step.after is not None:
                    self.children.setdefault((p.program, step.after.step), []).append(step)

    def orphans(self, store: Any, routes: dict) -> list[dict]:
        """Settlements for waiting rows whose parent has already ended (a dispatcher killed
        between the two writes, a step added after its parent was sent): due from the
        parent's own time. ``routes``: the dispatcher's, (program, step) -> its route, whose
        recipients give the customer's time zone for ``send_at``."""
        out: list[dict] = []
        for (program, parent), kids in self.children.items():
            parents = {}
            for kid in kids:
                for r in store.ended_parents(program, parent, kid.step):
                    parents[(r["customer_id"], r["subject_id"])] = r
            for (customer, subject), r in parents.items():
                route = routes.get((program, parent))
                who = route.recipients.lookup(customer, {}) if route is not None else {}
                row = {"program": program, "customer_id": customer, "subject_id": subject,
                       "step": parent, "recipient": who}  # fmt: skip
                at = datetime.fromisoformat(r["at"].replace("Z", "+00:00"))
                out += self._of(row, parent, r["status"], at)
        return out

    def settlements(self, settled: list[tuple[dict, str]], now: datetime) -> list[dict]:
        """For each (row, its final status) of a parent, what its waiting children become.
        ``row`` carries program, customer_id, subject_id, step and, when the dispatcher
        looked it up, ``recipient`` (for the children's ``send_at`` time zone)."""
        out: list[dict] = []
        for row, status in settled:
            out += self._of(row, row["step"], status, now)
        return out

    def _of(self, row: dict, step: str, status: str, now: datetime) -> list[dict]:
        kids = self.children.get((row["program"], step), [])
        if not kids or status not in ENDED + GOES_ON:
            return []
        key = {k: row[k] for k in ("program", "customer_id", "subject_id")}
        tz = (row.get("recipient") or {}).get("timezone")
        out = []
        for kid in kids:
            if status in GOES_ON:
                due = next_local_time(now + kid.after.delay, kid.send_at, tz)
                out.append({**key, "step": kid.step, "status": "pending", "send_after": iso(due)})
                continue
            reason = f"parent step {step} {status}"
            out.append({**key, "step": kid.step, "status": "suppressed", "reason": reason})
            out += self._of(row, kid.step, "suppressed", now)
        return out
