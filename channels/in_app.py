"""In-app: the Serving API already returns the customer's live candidates; dispatch records the
message as available (``sent``, with ``sent_at``) so frequency caps and analytics see it."""

from __future__ import annotations

from ceap.plugins import channels
from channels.base import Channel, Message, Result


@channels.register("in_app")
class InAppChannel(Channel):
    intrusive = False  # shown when the customer opens the app: no quiet hours
    commit_every = 500  # no external effect: a whole batch per record

    def send(self, messages: list[Message]) -> list[Result]:
        return [Result(m.key, True) for m in messages]
