"""WhatsApp Business Cloud API: approved template messages over HTTP.

    POST {base_url}/{phone_number_id}/messages   Authorization: Bearer $CEAP_WHATSAPP_TOKEN

The template is the channel's ``template`` (else the program's action); its body parameters
are the message variables named in ``options.parameters``. ``base_url`` is configurable so
tests point it at a local server. The idempotency key goes in ``biz_opaque_callback_data``
(echoed in delivery webhooks) and the ``Idempotency-Key`` header."""

from __future__ import annotations

import os

from ceap.plugins import channels
from channels.base import Channel, ChannelOptions, Message, Result
from channels.sms import E164
from channels.transport import HttpSender


class WhatsappOptions(ChannelOptions):
    base_url: str = "https://graph.facebook.com/v19.0"
    phone_number_id: str | None = None
    """The sending business number's id (default ``$CEAP_WHATSAPP_PHONE_NUMBER_ID``)."""
    language: str = "en_US"
    """Template language when the recipient has no ``locale``."""
    parameters: list[str] = ["subject_id"]
    """Message variables filling the template's body placeholders, in order."""


@channels.register("whatsapp")
class WhatsappChannel(Channel):
    Options = WhatsappOptions
    address_field = "phone"
    renders = False  # `template:` is the approved template's name at Meta

    def __init__(self, options=None, config_dir=None) -> None:
        super().__init__(options, config_dir)
        self._http: HttpSender | None = None

    def validate_recipient(self, address: str | None) -> str | None:
        if not address:
            return super().validate_recipient(address)
        return None if E164.match(address) else f"not an E.164 phone number: {address!r}"

    def send(self, messages: list[Message]) -> list[Result]:
        if self._http is None:
            self._http = HttpSender(token=os.environ.get("CEAP_WHATSAPP_TOKEN"))
        number = self.options.phone_number_id or os.environ.get("CEAP_WHATSAPP_PHONE_NUMBER_ID", "")
        url = f"{self.options.base_url.rstrip('/')}/{number}/messages"
        return [self._http.post(m.key, url, self.payload(m)) for m in messages]

    def payload(self, m: Message) -> dict:
        variables = m.variables()
        params = [
            {"type": "text", "text": str(variables.get(p, ""))} for p in self.options.parameters
        ]
        language = str(m.recipient.get("locale") or self.options.language).replace("-", "_")
        return {
            "messaging_product": "whatsapp", "to": (m.address or "").lstrip("+"), "type": "template",
            "biz_opaque_callback_data": m.key,
            "template": {"name": m.template or m.action, "language": {"code": language},
                         "components": [{"type": "body", "parameters": params}]},
        }  # fmt: skip

    def close(self) -> None:
        if self._http is not None:
            self._http.close()
            self._http = None
