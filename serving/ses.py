"""SES's events about sent mail, as SNS delivers them, turned into ``Feedback`` (DESIGN §8):
text in, typed events out, no I/O.

Two formats arrive: an identity's *notifications* (``notificationType``: Bounce, Complaint,
Delivery) and a configuration set's *event publishing* (``eventType``: also Send, Reject,
Open, Click, Rendering Failure, DeliveryDelay, Subscription). Both carry the same ``mail``,
``bounce``, ``complaint``, ``delivery`` objects.

    Bounce      -> bounced, permanent when bounceType is Permanent, one per bounced recipient
    Complaint   -> complained, one per complained recipient
    Delivery    -> delivered          Open -> opened          Click -> clicked (its link)
    Reject, Rendering Failure -> failed
    Send, DeliveryDelay, Subscription, AmazonSnsSubscriptionSucceeded, any other -> ignored

Which message: the ``ceap_key`` tag CEAP sends every SES message with (event publishing
carries tags; identity notifications do not), else SES's ``mail.messageId`` (the outbox's
message id of SES-sent rows), else the original ``Message-ID`` (``<key@ceap>``) from
``commonHeaders`` or ``headers`` (when the identity includes headers). Every name is kept in
``Feedback.extra["names"]``, tried in that order.

Replays: an event's id is the SNS ``MessageId`` (with the recipient when the event names
several; a click's is its link), so SNS delivering a message again records nothing new.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from datetime import datetime
from typing import Any

from pydantic import BaseModel, ConfigDict, ValidationError

from serving.feedback import Feedback
from stores.base import iso

OUR_MESSAGE_ID = re.compile(r"<([^<>@\s]{1,128})@ceap>")
"""``channels.email_message.message_id``: the Message-ID CEAP gives a row's email."""
MAX_NAMES = 8


class NotSes(ValueError):
    """The SNS message is not an SES event."""


class _Loose(BaseModel):
    """SES's objects, under SES's own (camelCase) field names; SES adds fields at will."""

    model_config = ConfigDict(extra="ignore")


class Recipient(_Loose):
    emailAddress: str
    status: str | None = None
    diagnosticCode: str | None = None


class Header(_Loose):
    name: str
    value: str


class Mail(_Loose):
    messageId: str | None = None
    timestamp: str | None = None
    tags: dict[str, list[str]] = {}
    commonHeaders: dict[str, Any] = {}
    headers: list[Header] = []


class Bounce(_Loose):
    bounceType: str | None = None
    bounceSubType: str | None = None
    bouncedRecipients: list[Recipient] = []
    timestamp: str | None = None
    feedbackId: str | None = None


class Complaint(_Loose):
    complainedRecipients: list[Recipient] = []
    complaintFeedbackType: str | None = None
    timestamp: str | None = None
    feedbackId: str | None = None


class Delivery(_Loose):
    recipients: list[str] = []
    smtpResponse: str | None = None
    timestamp: str | None = None


class Open(_Loose):
    userAgent: str | None = None
    timestamp: str | None = None


class Click(_Loose):
    link: str | None = None
    userAgent: str | None = None
    timestamp: str | None = None


class Reject(_Loose):
    reason: str | None = None


class Failure(_Loose):
    errorMessage: str | None = None
    templateName: str | None = None


class SesEvent(_Loose):
    notificationType: str | None = None
    eventType: str | None = None
    # None, not an empty model, when absent: pydantic deep-copies a model default on every
    # validation (a tenth of a millisecond here), and a handler reads only its own object.
    mail: Mail | None = None
    bounce: Bounce | None = None
    complaint: Complaint | None = None
    delivery: Delivery | None = None
    open: Open | None = None
    click: Click | None = None
    reject: Reject | None = None
    failure: Failure | None = None


def feedback(message: str, notification_id: str) -> tuple[list[Feedback], int]:
    """The events in an SNS ``message`` (its ``Message`` field) with SNS ``MessageId``
    ``notification_id``: (feedback, 1 when the event type means nothing here, else 0).
    Raises ``NotSes`` when the message is no SES event."""
    try:
        event = SesEvent.model_validate_json(message)
    except ValidationError as exc:
        raise NotSes(f"not an SES event: {exc.errors()[0]['msg']}") from None
    kind = event.eventType or event.notificationType
    if kind is None:
        raise NotSes("not an SES event: neither eventType nor notificationType")
    handler = HANDLERS.get(kind)
    if handler is None:
        return [], 1
    if event.mail is None:
        raise NotSes(f"an SES {kind} event without its mail object")
    return handler(event, _Context(event.mail, notification_id)), 0


class _Context:
    """What every event's feedback shares: the message's names, the SNS id, mail's time."""

    def __init__(self, mail: Mail, notification_id: str) -> None:
        self.names = names(mail)
        self.notification_id = notification_id
        self.sent_at = at(mail.timestamp)

    def one(self, event: str, when: str | None, event_id: str = "", **kw: Any) -> Feedback:
        kind, value = self.names[0] if self.names else ("key", None)
        return Feedback(
            event, key=value if kind == "key" else None,
            message_id=value if kind == "message_id" else None,
            at=at(when) or self.sent_at, event_id=event_id or self.notification_id,
            extra={"names": self.names}, **kw,
        )  # fmt: skip

    def each(
        self, event: str, when: str | None, addresses: list[tuple[str, Any]], **kw: Any
    ) -> list[Feedback]:
        """One feedback per (address, detail); ids tell recipients apart when several."""
        several = len(addresses) > 1
        out = []
        for address, detail in addresses or [(None, None)]:
            event_id = f"{self.notification_id}/{address}" if several else ""
            out.append(self.one(event, when, event_id, address=address, detail=detail, **kw))
        return out


def _bounce(event: SesEvent, ctx: _Context) -> list[Feedback]:
    b = event.bounce or Bounce()
    kind = {"bounceType": b.bounceType, "bounceSubType": b.bounceSubType,
            "feedbackId": b.feedbackId}  # fmt: skip
    recipients = [
        (r.emailAddress, {**kind, "status": r.status, "diagnosticCode": r.diagnosticCode})
        for r in b.bouncedRecipients
    ]
    return ctx.each("bounced", b.timestamp, recipients, permanent=b.bounceType == "Permanent")


def _complaint(event: SesEvent, ctx: _Context) -> list[Feedback]:
    c = event.complaint or Complaint()
    detail = {"complaintFeedbackType": c.complaintFeedbackType, "feedbackId": c.feedbackId}
    recipients = [(r.emailAddress, detail) for r in c.complainedRecipients]
    return ctx.each("complained", c.timestamp, recipients)


def _delivery(event: SesEvent, ctx: _Context) -> list[Feedback]:
    d = event.delivery or Delivery()
    recipients = [(r, {"smtpResponse": d.smtpResponse}) for r in d.recipients]
    return ctx.each("delivered", d.timestamp, recipients)


def _open(event: SesEvent, ctx: _Context) -> list[Feedback]:
    o = event.open or Open()
    return [ctx.one("opened", o.timestamp, detail={"userAgent": o.userAgent})]


def _click(event: SesEvent, ctx: _Context) -> list[Feedback]:
    c = event.click or Click()
    return [ctx.one("clicked", c.timestamp, c.link or "", detail={"url": c.link})]


def _reject(event: SesEvent, ctx: _Context) -> list[Feedback]:
    return [ctx.one("failed", None, detail={"reject": (event.reject or Reject()).reason})]


def _rendering_failure(event: SesEvent, ctx: _Context) -> list[Feedback]:
    f = event.failure or Failure()
    detail = {"renderingFailure": f.errorMessage, "templateName": f.templateName}
    return [ctx.one("failed", None, detail=detail)]


HANDLERS: dict[str, Callable[[SesEvent, _Context], list[Feedback]]] = {
    "Bounce": _bounce, "Complaint": _complaint, "Delivery": _delivery, "Open": _open,
    "Click": _click, "Reject": _reject, "Rendering Failure": _rendering_failure,
    "RenderingFailure": _rendering_failure,
}  # fmt: skip


def names(mail: Mail) -> list[tuple[str, str]]:
    """("key" | "message_id", value) pairs naming the outbox row, most specific first."""
    found = [("key", k) for k in mail.tags.get("ceap_key", [])]
    if mail.messageId:
        found.append(("message_id", mail.messageId))
    headers = [mail.commonHeaders.get("messageId")]
    headers += [h.value for h in mail.headers if h.name.lower() == "message-id"]
    for value in headers:
        if not isinstance(value, str) or not value.strip():
            continue
        ours = OUR_MESSAGE_ID.fullmatch(value.strip())
        if ours:
            found.append(("key", ours.group(1)))
        found.append(("message_id", value.strip()))
    return list(dict.fromkeys(found))[:MAX_NAMES]


def at(value: str | None) -> str | None:
    """SES's ISO-8601 time (``2017-08-05T00:41:02.669Z``) as the store's; None if absent or
    unreadable (the receiving time is used then)."""
    if not value:
        return None
    try:
        return iso(datetime.fromisoformat(value))
    except ValueError:
        return None
