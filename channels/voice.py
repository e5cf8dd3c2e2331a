"""Voice: prompt records a voice assistant reads when the customer next talks to it.

Records are JSON lines appended to ``options.path`` (default ``$CEAP_HOME/voice_prompts.jsonl``),
each with its idempotency ``key``: the assistant keeps the first record of a key, so a record
written again after a crash (the in-doubt window) is not prompted twice.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

from ceap.home import ceap_home
from ceap.plugins import channels
from channels.base import Channel, ChannelOptions, Message, Result


class VoiceOptions(ChannelOptions):
    path: str | None = None
    """The prompt file (JSON lines)."""


@channels.register("voice")
class VoiceChannel(Channel):
    Options = VoiceOptions
    intrusive = False  # spoken only when the customer engages the assistant
    commit_every = 500

    def send(self, messages: list[Message]) -> list[Result]:
        path = Path(self.options.path or ceap_home() / "voice_prompts.jsonl")
        path.parent.mkdir(parents=True, exist_ok=True)
        lines = "".join(
            json.dumps({"key": m.key, "customer_id": m.customer_id, "program": m.program,
                        "subject_id": m.subject_id, "prompt": m.body}) + "\n"
            for m in messages
        )  # fmt: skip
        with path.open("a", encoding="utf-8") as f:
            f.write(lines)
            f.flush()
            os.fsync(f.fileno())
        return [Result(m.key, True) for m in messages]
