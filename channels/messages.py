"""What flows through a channel: a ``Message`` on its way out, the ``Result`` of sending it,
and the ``Commit`` callback with which an adapter records a message as sent at the right
instant. Plain data, imported by the adapters, the renderer and the dispatcher alike."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, TypeAlias


@dataclass
class Message:
    """One outbox row on its way out. ``address`` and the rendered text are filled by
    ``Channel.prepare``; ``recipient`` is the customer's record (addresses, timezone, locale)."""

    key: str
    """The outbox idempotency key: the same on every attempt of this row."""
    program: str
    customer_id: str
    subject_id: str
    channel: str
    action: str
    subject_type: str
    template: str | None
    context: dict[str, Any]
    recipient: dict[str, Any]
    send_after: str
    attempts: int = 0
    address: str | None = None
    subject: str | None = None
    body: str = ""
    html: str | None = None
    """The HTML part, for channels that send one (email), when the template has one."""

    @property
    def campaign(self) -> str:
        """One campaign per program and send slot (the hour it became due)."""
        return f"{self.program}-{self.send_after[:13].replace(':', '')}"

    def variables(self) -> dict[str, Any]:
        """What templates see."""
        return {
            **self.context, "program": self.program, "customer_id": self.customer_id,
            "subject_id": self.subject_id, "subject_type": self.subject_type,
            "action": self.action, "channel": self.channel, "recipient": self.recipient,
            "key": self.key, "campaign": self.campaign,
        }  # fmt: skip


@dataclass
class Result:
    """The outcome of sending one message. ``retryable`` failures are retried with backoff;
    others end the row as ``failed``."""

    key: str
    ok: bool
    provider_id: str | None = None
    error: str | None = None
    retryable: bool = True
    extra: dict[str, Any] = field(default_factory=dict)


Commit: TypeAlias = "Callable[[Message], bool]"
