"""The outbox lease as types: what a dispatcher asks for in one round (``LeaseRequest``) and
what each leased row carries for the send-time rules (``LeasedRow``). Times are ISO-8601 UTC
text, as everywhere in the store."""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import Any, NamedTuple, TypedDict

Decision = tuple[Any, str, str]
"""``(rowid, "suppress" | "defer", reason or the new send_after)``: a screen's verdict."""


class LeasedRow(TypedDict, total=False):
    """One leased outbox row: its own fields, its candidate's, and the facts the send-time
    rules read (what ``CandidateStore.lease_outbox`` returns, on every backend)."""

    rowid: Any  # the backend's handle for the row (SQLite rowid, DynamoDB idempotency key)
    program: str
    customer_id: str
    subject_id: str
    channel: str
    send_after: str
    status: str
    attempts: int
    idempotency_key: str
    reason: str | None
    template: str | None
    shadow: int
    cand_status: str | None  # the candidate's status; None when it is gone
    expires_at: str | None
    action: str | None
    subject_type: str | None
    context: str | None  # JSON text
    opt_outs: list[tuple[str, str]]  # (program, channel), "*" = all
    recent: int  # live contacts on the channel since cap_since[channel], in flight included
    sent_times: list[str]  # sent_at of those sent, sorted
    in_flight: int  # live rows leased by another dispatcher
    shadow_times: list[str]  # the same for shadow contacts (they count toward shadow caps)
    shadow_in_flight: int
    step: str  # the journey step (the channel type unless named)
    responded: bool  # with LeaseRequest.conditions: a response to the candidate exists
    engaged: list[tuple[str, str]]  # ... and (step, event) engagement events of the candidate
    recipient: dict[str, Any]  # added by the dispatcher: the customer's record


class LeaseRequest(NamedTuple):
    """One round's lease: up to ``limit`` rows of ``programs`` (and ``channel``) due at
    ``now``, whose lease is free or expired at ``clock``, for ``owner`` until
    ``lease_until``; ``cap_since`` says from when each channel's contacts are read, and
    ``screen`` decides, inside the lease step, which rows are suppressed or deferred."""

    owner: str
    now: str
    clock: str
    lease_until: str
    limit: int
    programs: Sequence[str]
    channel: str | None = None
    cap_since: Mapping[str, str] | None = None
    screen: Callable[[list[LeasedRow]], list[Decision]] | None = None
    conditions: bool = False
    """Read the facts journey conditions need (``responded``, ``engaged``)."""
