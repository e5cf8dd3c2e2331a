"""SMS through Amazon SNS (``Publish`` to a phone number), E.164 numbers only.

The idempotency key travels as the ``ceap_key`` message attribute (SNS SMS does not
deduplicate by itself; delivery receipts carry it back)."""

from __future__ import annotations

import re

from ceap.plugins import channels
from channels.base import Channel, ChannelOptions, Message, Result
from channels.transport import aws_client, aws_result

E164 = re.compile(r"^\+[1-9]\d{6,14}$")


class SmsOptions(ChannelOptions):
    region: str | None = None
    endpoint_url: str | None = None
    """SNS endpoint (moto, LocalStack); default ``$AWS_ENDPOINT_URL`` or AWS."""
    sender_id: str | None = None
    sms_type: str = "Transactional"


@channels.register("sms")
class SmsChannel(Channel):
    Options = SmsOptions
    address_field = "phone"

    def __init__(self, options=None, config_dir=None) -> None:
        super().__init__(options, config_dir)
        self._sns = None

    def validate_recipient(self, address: str | None) -> str | None:
        if not address:
            return super().validate_recipient(address)
        return None if E164.match(address) else f"not an E.164 phone number: {address!r}"

    def send(self, messages: list[Message]) -> list[Result]:
        if self._sns is None:
            self._sns = aws_client("sns", self.options.region, self.options.endpoint_url)
        results = []
        for m in messages:
            attributes = {
                "AWS.SNS.SMS.SMSType": {"DataType": "String", "StringValue": self.options.sms_type},
                "ceap_key": {"DataType": "String", "StringValue": m.key},
            }
            if self.options.sender_id:
                attributes["AWS.SNS.SMS.SenderID"] = {
                    "DataType": "String", "StringValue": self.options.sender_id}  # fmt: skip
            results.append(aws_result(m.key, self._sns.publish, PhoneNumber=m.address,
                                      Message=m.body, MessageAttributes=attributes))  # fmt: skip
        return results
