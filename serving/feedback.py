"""What CEAP hears back about a message (DESIGN §8), whatever told it: a link in the message
(unsubscribe, click, open pixel), a provider's webhook (SES through SNS, WhatsApp) or a
generic ``POST /v1/deliveries``. Each becomes a ``Feedback``; ``apply`` finds the outbox row
it is about, records the engagement event once (a replay changes nothing), and acts on it:
an unsubscribe opts the customer out of that program on that channel; a permanent bounce or
a complaint puts the address on the suppression list for every program.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from prometheus_client import Counter

from stores.base import iso
from stores.roles import FeedbackStore

ENGAGEMENT = Counter(
    "ceap_engagement_events",
    "Delivery feedback by event and what became of it (recorded, replayed, unmatched)",
    ["event", "outcome"],
)
ACTING = frozenset({"unsubscribed", "complained", "bounced"})
"""The events that may change what serving's eligibility checks read."""
MAX_DETAIL_CHARS = 4096
"""A provider's detail is kept for inspection, cut to this size."""


@dataclass
class Feedback:
    """One event about one message: named by the outbox row's idempotency ``key`` or the
    provider's ``message_id``; ``event_id`` tells a replay from a new event of the same
    kind (a provider's notification id, a clicked URL; empty: once per message)."""

    event: str
    key: str | None = None
    message_id: str | None = None
    at: str | None = None
    permanent: bool | None = None
    address: str | None = None
    """The address the provider names (a bounced recipient), else the row's."""
    event_id: str = ""
    detail: Any = None
    extra: dict = field(default_factory=dict)


@dataclass
class Applied:
    recorded: int = 0
    replayed: int = 0
    unmatched: int = 0
    customers: set[str] = field(default_factory=set)
    """Whose opt-outs or addresses the events changed (unsubscribed, complained, bounced
    for good): their cached eligibility is stale now. Deliveries, opens and clicks change
    nothing an eligibility check reads, and forgetting scans the whole cache."""

    def as_dict(self) -> dict[str, int]:
        return {"recorded": self.recorded, "replayed": self.replayed, "unmatched": self.unmatched}


def apply(store: FeedbackStore, items: list[Feedback], now: datetime) -> Applied:
    """Records ``items`` on ``store`` (a store with the delivery feedback role) and acts on
    them; ``now`` is the receiving time (an aware datetime) for events without ``at``."""
    return apply_groups(store, [(items, now)])[0]


def apply_groups(
    store: FeedbackStore, groups: list[tuple[list[Feedback], datetime]]
) -> list[Applied]:
    """``apply`` for several requests' items at once (each with its receiving time): their
    events are recorded in one store write, and each group gets its own counts. An event
    repeated within the batch is recorded once, like a replay."""
    outs = [Applied() for _ in groups]
    events, matched = [], []
    for out, (items, now) in zip(outs, groups, strict=True):
        for item in named(store, items):
            row = store.find_message(key=item.key, message_id=item.message_id)
            if row is None:
                out.unmatched += 1
                ENGAGEMENT.labels(item.event, "unmatched").inc()
                continue
            matched.append((out, item, row, now))
            if item.event in ACTING:
                out.customers.add(row["customer_id"])
            events.append(_event(item, row, now))
    for _, item, row, now in matched:
        _act(store, item, row, item.at or iso(now))
    new = store.record_engagement(events) if events else []
    for (out, item, _, _), first in zip(matched, new, strict=True):
        outcome = "recorded" if first else "replayed"
        setattr(out, outcome, getattr(out, outcome) + 1)
        ENGAGEMENT.labels(item.event, outcome).inc()
    return outs


def named(store: FeedbackStore, items: list[Feedback]) -> list[Feedback]:
    """Points each item at the first of its ``extra["names"]`` that finds an outbox row (a
    provider names a message several ways: our key in a tag, its own id, our Message-ID)."""
    known: dict[tuple, str | None] = {}
    for item in items:
        names = tuple(item.extra.get("names") or ())
        if len(names) < 2:
            continue
        if names not in known:
            rows = (store.find_message(**{kind: value}) for kind, value in names)
            row = next((r for r in rows if r is not None), None)
            known[names] = row["idempotency_key"] if row else None
        if known[names] is not None:
            item.key, item.message_id = known[names], None
    return items


def _event(item: Feedback, row: dict, now: Any) -> dict:
    detail = (
        item.detail
        if item.detail is None or isinstance(item.detail, str)
        else json.dumps(item.detail, default=str, separators=(",", ":"))
    )
    return {
        "program": row["program"], "customer_id": row["customer_id"],
        "subject_id": row["subject_id"], "channel": row["channel"],
        "step": row.get("step") or row["channel"], "idempotency_key": row["idempotency_key"],
        "event": item.event, "at": item.at or iso(now),
        "detail": detail[:MAX_DETAIL_CHARS] if detail else None, "event_id": item.event_id,
    }  # fmt: skip


def _act(store: Any, item: Feedback, row: dict, at: str) -> None:
    """The event's effect; idempotent, so a replay applies it again harmlessly."""
    if item.event == "unsubscribed":
        store.add_opt_out(row["customer_id"], row["program"], row["channel"])
        return
    reason = None
    if item.event == "complained":
        reason = "complained"
    elif item.event == "bounced" and item.permanent:
        reason = "bounced address"
    address = item.address or row.get("address")
    if reason is not None and address:
        store.suppress_addresses([(address, reason, at)])
