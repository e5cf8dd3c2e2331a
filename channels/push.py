"""Push notifications: Amazon SNS platform endpoints (``provider: sns``, the recipient's
``push_endpoint_arn``) or an FCM-v1-shaped HTTP provider (``provider: http``, ``url``, the
recipient's ``push_token``, bearer token from ``$CEAP_PUSH_TOKEN``).

The HTTP call carries the idempotency key as ``Idempotency-Key`` and in the data payload."""

from __future__ import annotations

import json
import os
from typing import Literal

from ceap.plugins import channels
from channels.base import Channel, ChannelOptions, Message, Result
from channels.transport import HttpSender, aws_client, aws_result


class PushOptions(ChannelOptions):
    provider: Literal["sns", "http"] = "sns"
    url: str | None = None
    """HTTP provider endpoint (``provider: http``), e.g. FCM's ``.../messages:send``."""
    region: str | None = None
    endpoint_url: str | None = None


@channels.register("push")
class PushChannel(Channel):
    Options = PushOptions

    def __init__(self, options=None, config_dir=None) -> None:
        super().__init__(options, config_dir)
        self._client = None

    @property
    def address_field(self) -> str:  # type: ignore[override]
        return "push_endpoint_arn" if self.options.provider == "sns" else "push_token"

    def send(self, messages: list[Message]) -> list[Result]:
        if self.options.provider == "http":
            if not self.options.url:
                return [Result(m.key, False, error="push: options.url is required for provider http",
                               retryable=False) for m in messages]  # fmt: skip
            if self._client is None:
                self._client = HttpSender(token=os.environ.get("CEAP_PUSH_TOKEN"))
            return [self._client.post(m.key, self.options.url, _fcm(m)) for m in messages]
        if self._client is None:
            self._client = aws_client("sns", self.options.region, self.options.endpoint_url)
        return [
            aws_result(m.key, self._client.publish, TargetArn=m.address,
                       Message=json.dumps({"default": m.body, "GCM": json.dumps(_fcm(m)["message"])}),
                       MessageStructure="json")
            for m in messages
        ]  # fmt: skip

    def close(self) -> None:
        if isinstance(self._client, HttpSender):
            self._client.close()
        self._client = None


def _fcm(m: Message) -> dict:
    return {"message": {"token": m.address,
                        "notification": {"title": m.subject or m.action, "body": m.body},
                        "data": {"ceap_key": m.key, "program": m.program, "subject_id": m.subject_id}}}  # fmt: skip
