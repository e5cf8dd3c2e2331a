"""The channel contract. The pipeline needs only a channel's name and schedule; the adapter
that actually contacts customers is used by the dispatcher."""

from __future__ import annotations

from typing import ClassVar

from pydantic import BaseModel, ConfigDict


class ChannelOptions(BaseModel):
    model_config = ConfigDict(extra="forbid")


class Channel:
    """Base of every channel adapter.

    Args:
      options: the subclass's validated ``Options`` (credentials come from env vars).
    """

    type_name: ClassVar[str] = ""
    Options: ClassVar[type[BaseModel]] = ChannelOptions

    def __init__(self, options: BaseModel | dict | None = None) -> None:
        if not isinstance(options, BaseModel):
            options = self.Options.model_validate(options or {})
        self.options = options
