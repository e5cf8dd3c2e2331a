"""Importing this module registers the built-in channels.

The pipeline needs a channel's name and schedule to write outbox rows; the adapters'
sending side is the dispatcher's (see channels/base.py).
"""

from ceap.plugins import channels
from channels.base import Channel

for _name in ("email", "sms", "push", "in_app", "voice", "whatsapp"):
    channels.register(_name)(type(f"{_name.title().replace('_', '')}Channel", (Channel,), {}))
