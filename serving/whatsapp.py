"""WhatsApp Cloud API status callbacks turned into ``Feedback`` (DESIGN §8), and the two
checks Meta's webhooks need: bytes in, typed events out, no I/O.

    GET  ?hub.mode=subscribe&hub.verify_token=T&hub.challenge=C   -> C, when T is ours
    POST {"object": "whatsapp_business_account", "entry": [{"id", "changes": [{"field":
          "messages", "value": {"statuses": [{"id": wamid, "status", "timestamp" (epoch s),
          "recipient_id", "biz_opaque_callback_data"?, "errors"?: [...]}]}}]}]}
         X-Hub-Signature-256: sha256=<hex HMAC-SHA256 of the raw body, keyed by the app secret>

Statuses: delivered -> delivered, read -> opened, failed -> failed (``errors`` kept as the
detail); ``sent`` (known already) and any other status are ignored, and so are inbound
messages. The message is named by ``biz_opaque_callback_data`` (the row's key, which
channels/whatsapp.py sends) else by the wamid (the outbox's message id of WhatsApp rows).
An event's id is the wamid and its status, so Meta delivering a callback again records
nothing new.
"""

from __future__ import annotations

import hashlib
import hmac
from datetime import UTC, datetime
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from serving.feedback import Feedback
from stores.base import iso

EVENTS = {"delivered": "delivered", "read": "opened", "failed": "failed"}


class NotWhatsapp(ValueError):
    """The body is not a WhatsApp Business webhook payload."""


class _Loose(BaseModel):
    model_config = ConfigDict(extra="ignore")  # Meta adds fields at will


class Status(_Loose):
    id: str = Field(min_length=1, max_length=256)
    status: str
    timestamp: str | int | None = None
    recipient_id: str | None = None
    biz_opaque_callback_data: str | None = Field(None, max_length=512)
    errors: list[dict[str, Any]] = []


class Value(_Loose):
    statuses: list[Status] = []
    messages: list[Any] = []


class Change(_Loose):
    field: str | None = None
    value: Value = Value()


class Entry(_Loose):
    changes: list[Change] = []


class Callback(_Loose):
    object: str | None = None
    entry: list[Entry]


def signed(body: bytes, header: str | None, secret: str | None) -> bool:
    """Whether ``header`` (``sha256=<hex>``) is the HMAC-SHA256 of ``body`` keyed by
    ``secret``; compared in constant time. No secret, no header: False."""
    if not secret or not header:
        return False
    scheme, _, given = header.strip().partition("=")
    if scheme.lower() != "sha256":
        return False
    expected = hmac.new(secret.encode(), body, hashlib.sha256).hexdigest().encode()
    return hmac.compare_digest(expected, given.strip().lower().encode())


def feedback(body: bytes) -> tuple[list[Feedback], int]:
    """The status events in a webhook ``body``: (feedback, how many items were ignored)."""
    try:
        callback = Callback.model_validate_json(body)
    except ValidationError as exc:
        raise NotWhatsapp(f"not a WhatsApp webhook: {exc.errors()[0]['msg']}") from None
    items, ignored = [], 0
    for change in (c for e in callback.entry for c in e.changes):
        ignored += len(change.value.messages)
        for status in change.value.statuses:
            event = EVENTS.get(status.status)
            if event is None:
                ignored += 1
                continue
            items.append(_feedback(event, status))
    return items, ignored


def _feedback(event: str, status: Status) -> Feedback:
    names = [("message_id", status.id)]
    if status.biz_opaque_callback_data:
        names.insert(0, ("key", status.biz_opaque_callback_data))
    kind, value = names[0]
    return Feedback(
        event, key=value if kind == "key" else None,
        message_id=value if kind == "message_id" else None, at=at(status.timestamp),
        event_id=f"{status.id}/{status.status}", detail={"errors": status.errors} if status.errors else None,
        extra={"names": names},
    )  # fmt: skip


def at(timestamp: str | int | None) -> str | None:
    """Epoch seconds (Meta sends them as text) as the store's time; None if unreadable."""
    try:
        return iso(datetime.fromtimestamp(int(timestamp), UTC)) if timestamp else None
    except (ValueError, OverflowError, OSError):
        return None
