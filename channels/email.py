"""Email: SMTP (STARTTLS and auth from the environment) or Amazon SES (``provider: ses``).

    CEAP_SMTP_HOST (127.0.0.1), CEAP_SMTP_PORT (25), CEAP_SMTP_USER, CEAP_SMTP_PASSWORD,
    CEAP_SMTP_STARTTLS (1 to upgrade the connection), CEAP_EMAIL_FROM (ceap@localhost)

One SMTP connection is kept open across batches (re-opened when the server drops it). Each
message carries its idempotency key as ``Message-ID`` and ``X-CEAP-Idempotency-Key`` (SES:
a message tag), and its campaign (program + send slot) as ``X-CEAP-Campaign``; links in the
body get tracking parameters (utm_*, ``ceap_key``) so clicks map back to the outbox row.
"""

from __future__ import annotations

import os
import re
import smtplib
from email.message import EmailMessage
from typing import Literal
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

from ceap.plugins import channels
from channels.base import Channel, ChannelOptions, Message, Result
from channels.transport import aws_client, aws_result

_ADDRESS = re.compile(r"^[^@\s<>(),;:\"]+@[A-Za-z0-9-]+(\.[A-Za-z0-9-]+)+$")
_LINK = re.compile(r"https?://[^\s<>\"')]+")


class EmailOptions(ChannelOptions):
    provider: Literal["smtp", "ses"] = "smtp"
    sender: str | None = None
    """From address (default ``$CEAP_EMAIL_FROM``, else ceap@localhost)."""
    tracking: bool = True
    """Add utm_* and ceap_key parameters to links (click tracking)."""
    region: str | None = None
    """SES region (default ``$AWS_DEFAULT_REGION``)."""
    endpoint_url: str | None = None
    """SES endpoint (moto, LocalStack); default ``$AWS_ENDPOINT_URL`` or AWS."""


@channels.register("email")
class EmailChannel(Channel):
    Options = EmailOptions
    address_field = "email"

    def __init__(self, options=None, config_dir=None) -> None:
        super().__init__(options, config_dir)
        self._smtp: smtplib.SMTP | None = None
        self._ses = None

    @property
    def sender(self) -> str:
        return self.options.sender or os.environ.get("CEAP_EMAIL_FROM", "ceap@localhost")

    def validate_recipient(self, address: str | None) -> str | None:
        if not address:
            return super().validate_recipient(address)
        return None if _ADDRESS.match(address) else f"not an email address: {address!r}"

    def render(self, message: Message) -> None:
        super().render(message)
        if self.options.tracking:
            message.body = _LINK.sub(lambda m: track(m.group(0), message), message.body)

    def send(self, messages: list[Message]) -> list[Result]:
        if self.options.provider == "ses":
            return [self._send_ses(m) for m in messages]
        return [self._send_smtp(m) for m in messages]

    def close(self) -> None:
        if self._smtp is not None:
            try:
                self._smtp.quit()
            except (smtplib.SMTPException, OSError):
                self._smtp.close()
            self._smtp = None

    # -- SMTP -----------------------------------------------------------------------------
    def _connection(self) -> smtplib.SMTP:
        if self._smtp is None:
            env = os.environ
            smtp = smtplib.SMTP(env.get("CEAP_SMTP_HOST", "127.0.0.1"),
                                int(env.get("CEAP_SMTP_PORT", "25")), timeout=30)  # fmt: skip
            if env.get("CEAP_SMTP_STARTTLS", "0").lower() in ("1", "true", "yes"):
                smtp.starttls()
                smtp.ehlo()
            if env.get("CEAP_SMTP_USER"):
                smtp.login(env["CEAP_SMTP_USER"], env.get("CEAP_SMTP_PASSWORD", ""))
            self._smtp = smtp
        return self._smtp

    def _send_smtp(self, message: Message) -> Result:
        mail = self._mime(message)
        for attempt in (1, 2):
            try:
                self._connection().send_message(mail)
                return Result(message.key, True, provider_id=mail["Message-ID"])
            except smtplib.SMTPServerDisconnected as exc:
                self._smtp = None  # a dropped keep-alive connection: reconnect once
                if attempt == 2:
                    return Result(message.key, False, error=f"SMTP disconnected: {exc}")
            except smtplib.SMTPRecipientsRefused as exc:
                code = next(iter(exc.recipients.values()))[0]
                return Result(message.key, False, error=f"SMTP refused recipient: {code}",
                              retryable=code < 500)  # fmt: skip
            except smtplib.SMTPResponseException as exc:
                self.close()
                return Result(message.key, False, error=f"SMTP {exc.smtp_code}: {exc.smtp_error!r}",
                              retryable=exc.smtp_code < 500)  # fmt: skip
            except (smtplib.SMTPException, OSError) as exc:
                self.close()
                return Result(message.key, False, error=f"SMTP: {type(exc).__name__}: {exc}")
        raise AssertionError("unreachable")

    def _mime(self, message: Message) -> EmailMessage:
        mail = EmailMessage()
        mail["From"] = self.sender
        mail["To"] = message.address
        mail["Subject"] = message.subject or message.action
        mail["Message-ID"] = f"<{message.key}@ceap>"
        mail["X-CEAP-Idempotency-Key"] = message.key
        mail["X-CEAP-Campaign"] = message.campaign
        mail.set_content(message.body)
        return mail

    # -- SES ------------------------------------------------------------------------------
    def _send_ses(self, message: Message) -> Result:
        if self._ses is None:
            self._ses = aws_client("ses", self.options.region, self.options.endpoint_url)
        return aws_result(
            message.key, self._ses.send_email,
            Source=self.sender, Destination={"ToAddresses": [message.address]},
            Message={"Subject": {"Data": message.subject or message.action},
                     "Body": {"Text": {"Data": message.body}}},
            Tags=[{"Name": "ceap_key", "Value": message.key},
                  {"Name": "campaign", "Value": message.campaign}],
        )  # fmt: skip


def track(url: str, message: Message) -> str:
    """``url`` with utm_source/medium/campaign and ceap_key query parameters added."""
    parts = urlsplit(url)
    query = parse_qsl(parts.query, keep_blank_values=True)
    query += [("utm_source", "ceap"), ("utm_medium", message.channel),
              ("utm_campaign", message.campaign), ("ceap_key", message.key)]  # fmt: skip
    return urlunsplit(parts._replace(query=urlencode(query)))
