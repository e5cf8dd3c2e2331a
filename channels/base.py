"""The channel contract. The pipeline needs only a channel's name and schedule; the adapter
that actually contacts customers is used by the dispatcher (channels/dispatcher.py).

An adapter does three things, each overridable, and nothing else:

- ``validate_recipient(address)``: is this a deliverable address for the channel?
- ``render(message)``: the message's text from Jinja2 templates (channels/rendering.py);
- ``send(messages)``: deliver a batch, one ``Result`` per message, passing each message's
  idempotency key to the provider where the provider supports one.

Everything shared lives here or in the dispatcher, once: resolving the recipient (a customers
table, else the candidate's context: channels/recipients.py), shadow mode (the dispatcher
calls ``prepare`` and records ``shadowed`` instead of calling ``send``), quiet hours,
frequency caps, retries with backoff, leasing.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, ClassVar

from pydantic import BaseModel, ConfigDict, Field

from ceap.durations import Duration
from channels.messages import Commit, Message, Result
from channels.rendering import render

__all__ = [
    "Channel",
    "ChannelOptions",
    "Commit",
    "FrequencyCap",
    "Message",
    "RecipientsConfig",
    "Result",
]


class RecipientsConfig(BaseModel):
    """Where a channel finds customers' addresses: ``{type: parquet, options: {path}, key}``."""

    model_config = ConfigDict(extra="forbid")
    type: str = "parquet"
    """Only ``parquet`` (a file or directory of Parquet files) for now."""
    options: dict[str, Any] = Field(default_factory=dict)
    """``path``: the table."""
    key: str = "customer_id"
    """The table's column matching the outbox row's customer_id."""


class FrequencyCap(BaseModel):
    model_config = ConfigDict(extra="forbid")
    max: int = Field(ge=0)
    """Contacts allowed per customer on this channel, all programs together, ..."""
    window: Duration
    """... within this rolling window (``7d``)."""


class ChannelOptions(BaseModel):
    """Settings every channel accepts; adapters extend this model with their own."""

    model_config = ConfigDict(extra="forbid")
    recipients: RecipientsConfig | None = None
    """The customers table holding addresses and ``timezone``/``locale`` columns; when absent
    they are read from the candidate's context (``fields.context``)."""
    quiet_hours: str | None = None
    """``HH:MM-HH:MM`` customer-local time when nothing is sent (rows are deferred to its
    end); default ``$CEAP_QUIET_HOURS`` or 21:00-08:00 for intrusive channels, ``off`` for none."""
    frequency_cap: FrequencyCap | None = None
    """Global cap for this channel; default ``$CEAP_FREQUENCY_CAP`` (``3/7d``)."""
    address_field: str | None = None
    """The recipient column holding the address, when not the channel's usual one."""


class Channel:
    """Base of every channel adapter.

    Args:
      options: the subclass's validated ``Options`` (credentials come from env vars).
      config_dir: where ``templates/<template>.<channel>.j2`` are looked up first.
    """

    type_name: ClassVar[str] = ""
    Options: ClassVar[type[BaseModel]] = ChannelOptions
    address_field: ClassVar[str | None] = None
    """The recipient column this channel delivers to (``email``, ``phone``); None: none needed."""
    intrusive: ClassVar[bool] = True
    """Whether quiet hours apply by default (in-app and voice prompts wait for the customer)."""
    commit_every: ClassVar[int] = 1
    """Messages per ``send`` call, each call's outcome made durable before the next. For an
    adapter that does not call ``commit`` this is the window in which a crash leaves a message
    in doubt (accepted by the provider, not yet recorded)."""
    renders: ClassVar[bool] = True
    """Whether the channel's ``template:`` names a Jinja2 template (checked when a program
    loads); False where it names the provider's own (WhatsApp's approved templates)."""
    commits: ClassVar[bool] = False
    """Whether ``send`` takes and calls ``commit`` (see ``send``); the dispatcher passes it
    only then, so adapters written before it keep working."""

    def __init__(
        self, options: BaseModel | dict | None = None, config_dir: str | Path | None = None
    ) -> None:
        if not isinstance(options, BaseModel):
            options = self.Options.model_validate(options or {})
        self.options = options
        self.config_dir = Path(config_dir) if config_dir else None

    # -- the contract -----------------------------------------------------------------------
    def validate_recipient(self, address: str | None) -> str | None:
        """The reason ``address`` cannot be delivered to, or None when it can."""
        if self.field is not None and not address:
            return f"no {self.field} for the customer"
        return None

    def render(self, message: Message) -> None:
        """Fills ``message.subject`` and ``message.body`` from the channel's template."""
        message.subject, message.body = render(message, self.config_dir)

    def send(self, messages: list[Message], commit: Commit | None = None) -> list[Result]:
        """Delivers prepared messages; one Result per message, in order.

        Args:
          messages: at most ``commit_every`` messages, rendered and with valid addresses.
          commit: for protocols with a last step that makes a message irrevocable and that
            can be abandoned up to it (SMTP's end-of-data dot: a server discards a message
            whose connection drops before it), call ``commit(message)`` right before that
            step. It records the row as sent while the message can still be abandoned, so a
            crash leaves the row either unsent or recorded, never sent twice; it returns
            False when the row is no longer this dispatcher's (lease lost): abandon the
            message then. The Result of a committed message settles the row (ok: confirmed;
            a failure: back to pending or failed).
        """
        raise NotImplementedError(f"channel {self.type_name!r} cannot send")

    def close(self) -> None:
        """Releases connections kept between ``send`` calls."""

    # -- shared by every adapter ----------------------------------------------------------
    @property
    def field(self) -> str | None:
        """The recipient column delivered to: the option, else the channel's default."""
        return getattr(self.options, "address_field", None) or self.address_field

    def resolve_address(self, message: Message) -> str | None:
        if self.field is None:
            return None
        value = message.recipient.get(self.field)
        return None if value is None else str(value).strip()

    def prepare(self, message: Message) -> str | None:
        """Resolves, validates and renders: all a send does but sending. Returns the reason
        the message cannot be sent (a permanent failure), or None. Shadow mode stops here."""
        message.address = self.resolve_address(message)
        problem = self.validate_recipient(message.address)
        if problem is not None:
            return problem
        try:
            self.render(message)
        except Exception as exc:  # noqa: BLE001 - a template error fails the row, with its reason
            return f"template: {type(exc).__name__}: {exc}"
        return None
