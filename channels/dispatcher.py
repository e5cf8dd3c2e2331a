"""The dispatcher: drains the channel outbox through the adapters (docs/architecture.md: "Around the graph", "CLI").

Each round leases due rows atomically (``lease_outbox``: claim, guards and their decisions in
one store transaction), then sends them per (program, channel) and records each outcome.

Send-time guards (opt-outs, the candidate's state, quiet hours, frequency caps) are the
rulebook's (``channels/rules.py``), decided inside the lease step so two dispatchers see
each other.

Exactly-once effect. A row is ``pending`` until an outcome is recorded for it, and only the
lease holder may record one (``mark_outbox`` checks the owner). So:
  - killed before sending: the lease expires and another round sends the row;
  - killed after recording: the row is done, nobody leases it again;
  - SMTP closes the in-doubt window: the adapter calls ``commit`` right before the final
    dot of each message, which records the row as sent (still leased, reason "unconfirmed")
    while the server would still discard the message; the server's reply then settles it.
    Killed before the dot: the row is not sent yet, or the server drops the unterminated
    message and the row, never committed, is sent later. Killed after it: recorded, never
    resent; a row whose reply was cut off stays "unconfirmed" (the server had the whole
    message: RFC 1047). A commit refused because another dispatcher took the row over
    abandons the message;
  - adapters whose provider call cannot be split (HTTP APIs, SES, SNS) are in doubt between
    the provider's acceptance and the record (at most ``commit_every`` messages): the row
    is sent again *with the same idempotency key*, which they hand to the provider
    (Idempotency-Key HTTP header, SES tags, SNS attributes), so a provider or receiver
    deduplicating on it sees the message once;
  - two dispatchers never hold the same row, and one whose lease ran out stops sending.
Shadow channels go through the same steps but ``send``: rows end ``shadowed``.
"""

from __future__ import annotations

import json
import os
import time
from collections import Counter
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from prometheus_client import Counter as Metric

from ceap import logs, stopping
from ceap.context import RunContext
from ceap.progress import add_rows
from ceap.tokens import require_signing_key
from channels.base import Channel, Commit, Message, Result
from channels.health import ChannelHealth
from channels.journeys import Journeys
from channels.leases import default_owner, reclaim_orphaned_leases
from channels.recipients import Recipients
from channels.rendering import check_templates
from channels.rules import ChannelRules, Screen, is_shadow
from channels.schedule import frequency_cap, quiet_hours
from configs.programs import default_config_dir
from configs.schema import ChannelConfig, ProgramConfig, load_program, program_paths
from stores.base import iso
from stores.leasing import Decision, LeasedRow, LeaseRequest
from stores.ports import require_roles
from stores.roles import DispatchStore
from stores.spec import open_store

MESSAGES = Metric(
    "ceap_dispatch_messages", "Outbox rows dispatched, by outcome", ["program", "channel", "status"]
)
LEASE_SECONDS = float(os.environ.get("CEAP_DISPATCH_LEASE_SECONDS", "60"))
"""How long a leased row is held: one batch's sending (500 rows over SMTP take seconds); a
dispatcher stops sending with a quarter of it left and leaves the rest to the next round.
A dispatcher that dies holds its rows this long, unless one restarted on the same host
frees them first (``reclaim_orphaned_leases``)."""
MAX_ATTEMPTS = int(os.environ.get("CEAP_DISPATCH_MAX_ATTEMPTS", "5"))
BACKOFF_SECONDS = 30.0
BACKOFF_MAX_SECONDS = 3600.0


@dataclass
class Summary:
    """Rows per (channel, outcome); ``deferred`` counts quiet-hours deferrals, ``retry`` rows
    that failed and will be tried again."""

    counts: Counter = field(default_factory=Counter)
    seconds: float = 0.0

    def add(self, channel: str, status: str, n: int = 1) -> None:
        if n:
            self.counts[(channel, status)] += n

    def total(self, status: str) -> int:
        return sum(n for (_, s), n in self.counts.items() if s == status)

    def render(self) -> str:
        statuses = ("sent", "shadowed", "suppressed", "failed", "retry", "deferred")
        channels = sorted({c for c, _ in self.counts})
        lines = [f"{'channel':10s}" + "".join(f"{s:>12s}" for s in statuses)]
        for ch in channels:
            lines.append(f"{ch:10s}" + "".join(f"{self.counts[(ch, s)]:>12,}" for s in statuses))
        lines.append(f"{'total':10s}" + "".join(f"{self.total(s):>12,}" for s in statuses))
        handled = sum(self.total(s) for s in statuses)
        lines.append(
            f"  took {self.seconds:.2f}s ({handled / max(self.seconds, 1e-9):,.0f} rows/s)"
        )
        return "\n".join(lines)


class _Route:
    """One program's step: its channel config, adapter, recipients and send-time rules."""

    def __init__(self, program: ProgramConfig, config: ChannelConfig, config_dir: Path) -> None:
        from ceap.plugins import channels

        self.program = program
        self.config = config
        self.adapter: Channel = channels.get(config.type)(config.options, config_dir)
        self.recipients = Recipients(getattr(self.adapter.options, "recipients", None))
        self.rules = ChannelRules(
            shadow=config.shadow, quiet=quiet_hours(self.adapter), cap=frequency_cap(self.adapter),
            when=config.when,
        )  # fmt: skip


class Dispatcher:
    """Args:
    store: an open store implementing the outbox methods of ``CandidateStore``.
    programs: the program configs whose rows may be sent (rows of others are left alone).
    config_dir: where templates are looked up first.
    owner: this dispatcher's lease identity (unique per process by default).
    """

    def __init__(
        self,
        store: DispatchStore,
        programs: list[ProgramConfig],
        config_dir: Path,
        owner: str | None = None,
        lease_seconds: float = LEASE_SECONDS,
    ) -> None:
        # Consecutive failed sends -> a channel_failing alert. First: a bad threshold fails here.
        self.health = ChannelHealth()
        self.store = store
        self.owner = owner or default_owner()
        self.lease = timedelta(seconds=lease_seconds)
        self.routes: dict[tuple[str, str], _Route] = {
            (p.program, c.step): _Route(p, c, config_dir) for p in programs for c in p.channels
        }
        self.programs = sorted({p.program for p in programs})
        self.journeys = Journeys(programs)
        self.conditions = any(r.rules.when for r in self.routes.values())

    def close(self) -> None:
        for route in self.routes.values():
            route.adapter.close()

    # -- one round ----------------------------------------------------------------------
    def round(
        self, now: datetime, summary: Summary, channel: str | None = None, limit: int = 500
    ) -> int:
        """Leases, screens and sends one batch; returns the rows leased (0: nothing due)."""
        clock = _wall()
        lease_until = clock + self.lease
        # The store counts each channel's contacts over the widest window any program caps it
        # with; each program then counts those inside its own window (the rulebook's).
        caps: dict[str, str] = {}
        for r in self.routes.values():
            if r.rules.cap is not None:
                since = iso(now - r.rules.cap.window)
                caps[r.config.type] = min(caps.get(r.config.type, since), since)
        screened: list[tuple[dict, str]] = []
        rows = self.store.lease_outbox(LeaseRequest(
            self.owner, iso(now), iso(clock), iso(lease_until), limit, self.programs,
            channel, caps, lambda rows: self._screen(rows, Screen(now), screened),
            conditions=self.conditions,
        ))  # fmt: skip
        for row, status in screened:
            summary.add(row["channel"], status)
        self._settle_children(screened, now)
        groups: dict[tuple[str, str], list[dict]] = {}
        for row in rows:
            groups.setdefault((row["program"], row["step"]), []).append(row)
        for key, group in groups.items():
            self._deliver(self.routes[key], group, now, lease_until, summary)
        return len(rows) + len(screened)

    def _settle_children(self, settled: list[tuple[dict, str]], now: datetime) -> None:
        """Journeys: the waiting children of rows that just ended (sent, shadowed,
        suppressed, failed) are released or ended (channels/journeys.py)."""
        if self.journeys.children and settled:
            self.store.settle_waiting(self.journeys.settlements(settled, now))

    def _screen(self, rows: list[LeasedRow], screen: Screen, out: list) -> list[Decision]:
        """The rulebook's decisions for a round's leased rows (the recipient is looked up
        only for rows its own facts do not suppress)."""
        decisions = []
        for row in rows:
            route = self.routes.get((row["program"], row["step"]))
            decision = screen.suppress(row, route.rules if route else None)
            if decision is None:
                row["recipient"] = route.recipients.lookup(row["customer_id"], _context(row))
                decision = screen.schedule(row, route.rules, row["recipient"].get("timezone"))
            if decision is None:
                continue
            decisions.append(decision)
            status = "deferred" if decision[1] == "defer" else "suppressed"
            out.append((row, status))
            if status == "suppressed":
                MESSAGES.labels(row["program"], row["channel"], "suppressed").inc()
        return decisions

    def _deliver(
        self,
        route: _Route,
        rows: list[dict],
        now: datetime,
        lease_until: datetime,
        summary: Summary,
    ) -> None:
        adapter, by_key = route.adapter, {r["idempotency_key"]: r for r in rows}
        ready, updates = self._prepare(route, rows)
        self._record(by_key, updates, now, summary)
        step = max(1, adapter.commit_every)
        for i in range(0, len(ready), step):
            chunk = ready[i : i + step]
            # Never send on a lease that may have run out: another dispatcher may own the row.
            margin = timedelta(seconds=min(30.0, self.lease.total_seconds() / 4))
            if _wall() >= lease_until - margin:
                self.store.release_outbox(self.owner, [m.key for m in ready[i:]])
                return
            committed: dict[str, bool] = {}  # key -> commit granted (False: lease lost)
            try:
                if adapter.commits:
                    results = adapter.send(chunk, commit=self._committer(now, committed))
                else:
                    results = adapter.send(chunk)
            except Exception as exc:  # noqa: BLE001 - a provider outage is a retryable failure
                results = [
                    Result(m.key, False, error=f"{type(exc).__name__}: {exc}") for m in chunk
                ]
            self.health.record(route, results)
            attempts = {m.key: m.attempts for m in chunk}
            addresses = {m.key: m.address for m in chunk}
            outcomes = []
            for result in results:
                granted = committed.get(result.key)
                if granted is False:
                    continue  # another dispatcher owns the row now; the message was abandoned
                outcome = _outcome(result, attempts[result.key], now)
                if result.ok:
                    outcome.update(address=addresses[result.key], message_id=result.provider_id)
                if granted:  # recorded as sent already: settle it
                    outcome.update(attempted=False, from_status="sent")
                    if result.ok:
                        outcome["reason"] = result.extra.get("unconfirmed")
                outcomes.append(outcome)
            self._record(by_key, outcomes, now, summary)

    def _prepare(self, route: _Route, rows: list[dict]) -> tuple[list[Message], list[dict]]:
        """Messages ready to send, and the outcomes of rows that will not be sent: no valid
        address or text (failed), an address on the suppression list (suppressed), shadow."""
        program, channel = route.program, route.config.type
        messages, updates = [], []
        for row in rows:
            message = Message(
                key=row["idempotency_key"], program=row["program"], customer_id=row["customer_id"],
                subject_id=row["subject_id"], channel=channel, action=row["action"] or program.action,
                subject_type=row["subject_type"] or program.subject_type,
                template=row["template"] or route.config.template, context=_context(row),
                recipient=row["recipient"], send_after=row["send_after"], attempts=row["attempts"],
            )  # fmt: skip
            problem = route.adapter.prepare(message)
            if problem is not None:
                updates.append({"key": message.key, "status": "failed", "reason": problem})
            else:
                messages.append((message, row))
        barred = self._suppressed([m.address for m, _ in messages if m.address])
        ready = []
        for message, row in messages:
            if message.address in barred:
                updates.append({"key": message.key, "status": "suppressed", "attempted": False,
                                "reason": barred[message.address]})  # fmt: skip
            elif is_shadow(row, route.rules):
                updates.append({"key": message.key, "status": "shadowed", "attempted": False,
                                "reason": _preview(message), "address": message.address})  # fmt: skip
            else:
                ready.append(message)
        return ready, updates

    def _suppressed(self, addresses: list[str]) -> dict[str, str]:
        """address -> reason for addresses on the suppression list (bounced, complained)."""
        return self.store.suppressed_addresses(addresses) if addresses else {}

    def _committer(self, now: datetime, committed: dict[str, bool]) -> Commit:
        """The ``commit`` an adapter calls right before a message becomes irrevocable: marks
        the row sent (still leased, reason "unconfirmed" until its Result settles it), in its
        own transaction; False when the row is no longer this dispatcher's."""

        def commit(message: Message) -> bool:
            update = {"key": message.key, "status": "sent", "sent_at": iso(now),
                      "reason": "unconfirmed: committed before the provider's reply",
                      "keep_lease": True, "address": message.address}  # fmt: skip
            granted = self.store.mark_outbox(self.owner, [update], iso(_wall())) == 1
            committed[message.key] = granted
            return granted

        return commit

    def _record(
        self, rows: dict[str, dict], updates: list[dict], now: datetime, summary: Summary
    ) -> None:
        """Records outcomes of leased ``rows`` (by key), then settles their journey children."""
        if not updates:
            return
        self.store.mark_outbox(self.owner, updates, iso(_wall()))
        for u in updates:
            row = rows[u["key"]]
            status = "retry" if u["status"] == "pending" else u["status"]
            summary.add(row["channel"], status)
            MESSAGES.labels(row["program"], row["channel"], status).inc()
        self._settle_children([(rows[u["key"]], u["status"]) for u in updates], now)


def dispatch(
    store_spec: str = "sqlite",
    config_dir: str | Path | None = None,
    program: str | None = None,
    channel: str | None = None,
    now: datetime | None = None,
    owner: str | None = None,
    batch_size: int = 500,
    lease_seconds: float = LEASE_SECONDS,
    max_rounds: int | None = None,
    reclaim: bool = True,
) -> Summary:
    """Sends every due outbox row of the programs in ``config_dir`` (or of ``program``), on
    every channel (or ``channel``), as of ``now`` (default: the wall clock), until none is
    due. Returns counts per channel and outcome. ``reclaim``: first free the leases of this
    host's dispatchers that are gone (a look over every pending row: a ``--loop`` does it
    on its first pass only)."""
    config_dir = Path(config_dir or default_config_dir())
    logs.bind(stage="dispatch")
    require_signing_key("dispatch")  # links signed with a one-machine key would not verify
    programs = load_programs(config_dir, program)
    for p in programs:  # a missing or unsafe template stops the run before a row is leased
        check_templates(p, config_dir)
    store = open_store(store_spec)
    require_roles(store, "dispatch", store_spec)
    if reclaim:
        reclaim_orphaned_leases(store, iso(_wall()))
    dispatcher = Dispatcher(store, programs, config_dir, owner, lease_seconds)
    if reclaim and dispatcher.journeys.children:
        store.settle_waiting(dispatcher.journeys.orphans(store, dispatcher.routes))
    summary = Summary()
    started = time.perf_counter()
    rounds = 0
    try:
        while (max_rounds is None or rounds < max_rounds) and not stopping.requested():
            rounds += 1
            handled = dispatcher.round(now or RunContext.utcnow(), summary, channel, batch_size)
            if not handled:
                break
            add_rows(handled)
    finally:
        dispatcher.close()
        store.close()
        summary.seconds = time.perf_counter() - started
    return summary


def load_programs(config_dir: Path, program: str | None = None) -> list[ProgramConfig]:
    if program is not None:
        from configs.programs import load_by_name

        return [load_by_name(program, config_dir)]
    return [load_program(p) for p in program_paths(config_dir)]


def _outcome(result: Result, attempts: int, now: datetime) -> dict:
    if result.ok:
        return {"key": result.key, "status": "sent", "sent_at": iso(now), "reason": None}
    if result.retryable and attempts + 1 < MAX_ATTEMPTS:
        delay = min(BACKOFF_MAX_SECONDS, BACKOFF_SECONDS * 2**attempts)
        return {"key": result.key, "status": "pending", "reason": result.error,
                "next_attempt_at": iso(_wall() + timedelta(seconds=delay))}  # fmt: skip
    return {"key": result.key, "status": "failed", "reason": result.error}


def _context(row: dict) -> dict[str, Any]:
    if "_context" not in row:
        try:
            row["_context"] = json.loads(row["context"] or "{}")
        except ValueError:
            row["_context"] = {}
    return row["_context"]


def _preview(message: Message) -> str:
    """What a shadow send would have been (recorded in the row's reason)."""
    return f"shadow: to {message.address or message.customer_id}: {message.body[:120]}"


def _wall() -> datetime:
    return datetime.now(UTC)
