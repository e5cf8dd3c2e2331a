"""The candidate store contract: candidates, outbox, dead letters and the platform's
registries (opt-outs, responses), behind one interface with an embedded and a cloud backend.

Tables cross the interface as Arrow tables whose columns carry the record field names of
docs/architecture.md, "Tables"; times are ISO-8601 UTC text (``2026-11-25T10:00:00Z``).
"""

from __future__ import annotations

from contextlib import AbstractContextManager
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

import pyarrow as pa

if TYPE_CHECKING:
    from stores.leasing import LeasedRow, LeaseRequest

CANDIDATE_COLUMNS = [
    "program", "customer_id", "subject_type", "subject_id", "action", "context", "score",
    "model_id", "treatment", "created_at", "expires_at", "deliver_after", "status",
]  # fmt: skip
OUTBOX_COLUMNS = [
    "program", "customer_id", "subject_id", "channel", "send_after", "status", "attempts",
    "idempotency_key", "reason",
]  # fmt: skip
DEAD_LETTER_COLUMNS = ["program", "stage", "reason", "row", "time", "origin"]
ENGAGEMENT_COLUMNS = [
    "program", "customer_id", "subject_id", "channel", "step", "idempotency_key", "event",
    "at", "detail",
]  # fmt: skip
ENGAGEMENT_EVENTS = (
    "delivered", "bounced", "complained", "opened", "clicked", "unsubscribed", "failed",
)  # fmt: skip


def address_key(address: str) -> str:
    """An address as the suppression list keys it: emails case-folded, phones as digits
    with their leading +."""
    address = address.strip()
    if "@" in address:
        return address.lower()
    return ("+" if address.startswith("+") else "") + "".join(c for c in address if c.isdigit())


def iso(ts: datetime) -> str:
    """The store's time format: second precision, UTC, ``Z`` suffix (sortable as text)."""
    if ts.tzinfo is None:
        ts = ts.replace(tzinfo=UTC)
    return ts.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


class CandidateStore:
    """Base of the store backends: every role's methods (stores/ports.py), each raising
    NotImplementedError until a backend implements it and lists the role in ``roles``.
    Writes are upserts by key, so re-running never duplicates."""

    roles: frozenset = frozenset()
    """The roles (``stores.ports.Role``) this backend implements."""

    # -- pipeline writes -----------------------------------------------------------------
    def writing(self) -> AbstractContextManager:
        """A block of writes (a batch's candidates and their outbox rows) committed
        together where the backend has transactions; elsewhere each write is its own."""
        raise NotImplementedError

    def upsert_candidates(self, candidates: pa.Table) -> int:
        """Writes candidates; an existing live one keeps its created_at and expires_at, a
        consumed or suppressed one is left alone (the customer acted or was excluded)."""
        raise NotImplementedError

    def enqueue_outbox(self, rows: pa.Table) -> int:
        """Adds outbox rows; a row already there is left as it is (a re-run never reschedules
        or resends: the dispatcher owns a row once queued). Returns how many were added."""
        raise NotImplementedError

    def write_dead_letters(self, rows: pa.Table) -> int:
        """Records bad rows; keyed by (program, stage, origin): a re-run adds none, changes none."""
        raise NotImplementedError

    def record_run(self, run: dict[str, Any]) -> None:
        raise NotImplementedError

    # -- streaming ledger (one outcome per event; see transforms/outcomes.py) -------------
    def record_outcomes(self, program: str, outcomes: pa.Table) -> int:
        """Records event outcomes; the first outcome of a position wins (replays add none)."""
        raise NotImplementedError(f"{type(self).__name__} does not keep a streaming ledger yet")

    def record_stream_batch(self, program: str, start: int, end: int, size: int) -> None:
        """Records a micro-batch the source emitted: positions [start, end), ``size`` events."""
        raise NotImplementedError(f"{type(self).__name__} does not keep a streaming ledger yet")

    def seen_events(self, program: str, identities: list[str], since: datetime) -> dict[str, int]:
        """identity -> position of events already accounted for since ``since``."""
        raise NotImplementedError(f"{type(self).__name__} does not keep a streaming ledger yet")

    def unaccounted_events(self, program: str) -> int:
        """Events read but without an outcome yet (a drain waits for zero)."""
        raise NotImplementedError(f"{type(self).__name__} does not keep a streaming ledger yet")

    def resume_position(self, program: str) -> int:
        raise NotImplementedError(f"{type(self).__name__} does not keep a streaming ledger yet")

    # -- pipeline lookups: snapshots taken once per worker in batch runs; in streaming runs
    # restricted to the customers of each micro-batch (``customers=``), so always current.
    def live_keys(
        self, program: str, now: datetime, customers: list[str] | None = None
    ) -> pa.Table:
        """(customer_id, subject_id, deliver_after) of live, unexpired candidates of the program."""
        raise NotImplementedError

    def acted_keys(self, program: str | None, customers: list[str] | None = None) -> pa.Table:
        """(program, customer_id, subject_id) the customer responded to."""
        raise NotImplementedError

    def contacts(self, since: datetime, customers: list[str] | None = None) -> pa.Table:
        """(program, customer_id, subject_id, channel, contacted_at) actually sent since.

        Queued rows are not contacts yet: counting them would make a re-run of the same
        batch rank differently; the dispatcher enforces caps again at send time."""
        raise NotImplementedError

    def opt_outs(self, customers: list[str] | None = None) -> pa.Table:
        """(customer_id, program, channel); null program/channel means all."""
        raise NotImplementedError

    def cached_scores(self, program: str) -> pa.Table:
        """(customer_id, subject_id, score, model_id) last stored, for the scoring fallback."""
        raise NotImplementedError

    # -- registries written by the API ---------------------------------------------------
    def add_opt_out(self, customer_id: str, program: str | None, channel: str | None) -> None:
        raise NotImplementedError

    def remove_opt_outs(self, customer_id: str) -> int:
        raise NotImplementedError

    def record_response(
        self, program: str, customer_id: str, subject_id: str, response: Any,
        key: str | None = None,
    ) -> bool:  # fmt: skip
        """Keeps the response (every one: a customer may answer twice) and consumes the
        candidate; True when there was a candidate. A ``key`` (the client's idempotency key)
        makes a retry a no-op: one response per key and candidate key."""
        raise NotImplementedError

    # -- serving reads (the Serving API) ---------------------------------------------------
    def customer_candidates(
        self, customer_id: str, program: str | None = None, limit: int = 100
    ) -> list[dict]:
        """A customer's live candidates, best score first: dicts of customer_id, the serving
        fields, status and deliver_after (context as the stored JSON text)."""
        raise NotImplementedError

    def expire_candidate(self, program: str, customer_id: str, subject_id: str) -> bool:
        """Marks a live candidate expired (failed a serving re-check); False when not live."""
        raise NotImplementedError

    def has_response(self, program: str, customer_id: str, subject_id: str) -> bool:
        """Whether the customer already responded to this subject in this program."""
        raise NotImplementedError

    def is_opted_out(self, customer_id: str, program: str, channel: str | None = None) -> bool:
        """Opted out of this program (or of all) on every channel, or on ``channel`` too."""
        raise NotImplementedError

    # -- reads ---------------------------------------------------------------------------
    def table(self, name: str) -> pa.Table:
        """A whole table (candidates, outbox, dead_letters, runs, opt_outs, responses)."""
        raise NotImplementedError

    def close(self) -> None:
        """Releases connections."""

    # -- the dispatcher's outbox (channels/dispatcher.py) ----------------------------------
    def lease_outbox(self, request: LeaseRequest) -> list[LeasedRow]:
        """Leases up to ``request.limit`` due rows (pending, ``send_after <= now``, lease free
        or expired at ``clock``, retry time reached) for ``owner`` until ``lease_until``, in
        one atomic step: two dispatchers never hold the same row.

        Each row comes back as a ``LeasedRow``: its outbox fields plus its candidate's (``cand_status``,
        ``expires_at``, ``action``, ``subject_type``, ``context``), the customer's opt-outs
        (``opt_outs``: (program, channel) pairs, ``*`` = all), ``recent``: contacts on that
        channel since ``cap_since[channel]`` (sent, or leased by another dispatcher), and
        what it sums, ``sent_times`` (sorted ``sent_at`` of those sent) and ``in_flight``, so
        a program whose cap window is shorter than ``cap_since`` counts its own; and the same
        for shadow contacts, ``shadow_times`` and ``shadow_in_flight``, which count toward
        shadow caps only. Within
        the same step ``screen(rows)`` returns ``(rowid, "suppress" | "defer", reason or new
        send_after)`` decisions, which are applied before the lease is granted; the rows
        left are returned. Times are ISO-8601 UTC text."""
        raise NotImplementedError(
            f"{type(self).__name__} cannot lease the outbox: dispatch needs sqlite or dynamodb"
        )

    def mark_outbox(self, owner: str, updates: list[dict], clock: str) -> int:
        """Records outcomes of leased rows and frees them; a row no longer leased by ``owner``
        is left alone. Each update: ``key`` (idempotency key), ``status`` (sent, shadowed,
        failed, suppressed or pending for a retry), ``reason``, ``sent_at``,
        ``next_attempt_at``, ``attempted`` (bool: counts as an attempt). Returns rows marked.

        Two optional fields serve adapters that commit before the irrevocable step
        (``Channel.send``'s ``commit``): ``keep_lease`` (default False) records the status but
        keeps the row leased, so the owner can still settle it; ``from_status`` (default
        ``pending``) is the status the row must have, ``sent`` to settle a committed row."""
        raise NotImplementedError(f"{type(self).__name__} cannot mark outbox rows yet")

    def outbox_leases(self, owner_prefix: str, clock: str) -> dict[str, list[str]]:
        """Owner -> idempotency keys of the pending rows it holds a live lease on (at
        ``clock``), for owners whose id starts with ``owner_prefix`` (a host's dispatchers),
        so a restarted dispatcher can free those of a process that is gone."""
        raise NotImplementedError(f"{type(self).__name__} has no outbox")

    def release_outbox(self, owner: str, keys: list[str]) -> int:
        """Frees leases held by ``owner`` on rows it will not send now (stopping, lease short)."""
        raise NotImplementedError(f"{type(self).__name__} cannot release outbox rows yet")

    def outbox_status(self, program: str | None = None, channel: str | None = None) -> pa.Table:
        """Delivery status: (program, channel, status, rows) counts."""
        raise NotImplementedError(f"{type(self).__name__} cannot report outbox status yet")

    def settle_waiting(self, settlements: list[dict]) -> int:
        """Journeys (DESIGN §9): moves ``waiting`` rows on once their parent step is settled.
        Each settlement names the row (program, customer_id, subject_id, step) and gives its
        ``status``: ``pending`` with ``send_after`` (the parent was sent or shadowed), or
        ``suppressed`` with ``reason`` (it was suppressed or failed). A row no longer waiting
        is left alone. Returns rows moved."""
        raise NotImplementedError(f"{type(self).__name__} cannot settle journey steps yet")

    def ended_parents(self, program: str, parent: str, child: str) -> list[dict]:
        """Journeys: the ``child`` rows of ``program`` still waiting although their
        ``parent`` step's row has ended (sent, shadowed, suppressed, failed): a dispatcher
        killed between the two writes, or a step added after its parent was sent. Each:
        customer_id, subject_id, the parent's ``status`` and ``at`` (sent_at, else its last
        change)."""
        raise NotImplementedError(f"{type(self).__name__} cannot settle journey steps yet")

    # -- delivery feedback (DESIGN §8) -------------------------------------------------------
    def find_message(self, key: str | None = None, message_id: str | None = None) -> dict | None:
        """The outbox row a message came from, by its idempotency key or the provider's
        message id: program, customer_id, subject_id, channel, idempotency_key, address,
        message_id, status, shadow. None when no row matches."""
        raise NotImplementedError(f"{type(self).__name__} keeps no delivery feedback yet")

    def record_engagement(self, events: list[dict]) -> list[bool]:
        """Keeps engagement events (ENGAGEMENT_COLUMNS, plus ``event_id``: what makes a
        replay the same event); the first of each (idempotency_key, event, event_id) wins.
        Returns, per event, whether it was new."""
        raise NotImplementedError(f"{type(self).__name__} keeps no delivery feedback yet")

    def suppress_addresses(self, entries: list[tuple[str, str, str]]) -> int:
        """Puts (address, reason, at) on the suppression list (every program, every later
        row to it ends suppressed); an address already there keeps its first reason."""
        raise NotImplementedError(f"{type(self).__name__} keeps no delivery feedback yet")

    def suppressed_addresses(self, addresses: list[str]) -> dict[str, str]:
        """address -> reason, for those of ``addresses`` on the suppression list."""
        raise NotImplementedError(f"{type(self).__name__} keeps no delivery feedback yet")


def response_id(now: str, key: str | None) -> str:
    """A response's id: the client's idempotency key, else its time and a random part (two
    responses in the same second are two rows). The prefixes keep the two kinds apart."""
    import uuid

    return f"key:{key}" if key is not None else f"at:{now}:{uuid.uuid4().hex[:12]}"
