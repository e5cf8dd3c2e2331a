"""Email: SMTP (STARTTLS and auth from the environment) or Amazon SES (``provider: ses``).

    CEAP_SMTP_HOST (127.0.0.1), CEAP_SMTP_PORT (25), CEAP_SMTP_USER, CEAP_SMTP_PASSWORD,
    CEAP_SMTP_STARTTLS (1 to upgrade the connection; the certificate is verified),
    CEAP_SMTP_CA_FILE (CA bundle for a private relay), CEAP_EMAIL_FROM (ceap@localhost)

One SMTP connection is kept open across batches (re-opened when the server drops it). The
message itself (text + HTML parts, one-click unsubscribe, signed click links, open pixel) is
built by ``channels/email_message.py``; it carries its idempotency key as ``Message-ID`` and
``X-CEAP-Idempotency-Key`` (SES: also a message tag), and its campaign (program + send slot)
as ``X-CEAP-Campaign``. SES sends the same raw message and names the configuration set
(``configuration_set``) through which SES publishes bounces, complaints, deliveries, opens
and clicks (docs/feedback.md).
"""

from __future__ import annotations

import os
import re
import smtplib
import socket
import ssl
from typing import Literal

from ceap.plugins import channels
from channels.base import Channel, ChannelOptions, Commit, Message, Result
from channels.email_message import build, message_id
from channels.rendering import render_html
from channels.transport import aws_client, aws_result

_ADDRESS = re.compile(r"^[^@\s<>(),;:\"]+@[A-Za-z0-9-]+(\.[A-Za-z0-9-]+)+$")


class EmailOptions(ChannelOptions):
    provider: Literal["smtp", "ses"] = "smtp"
    sender: str | None = None
    """From address (default ``$CEAP_EMAIL_FROM``, else ceap@localhost)."""
    tracking: bool = True
    """Links go through signed click URLs (with utm_* and ceap_key added to the target) and
    the HTML part carries an open pixel; the unsubscribe link and headers are always there."""
    configuration_set: str | None = None
    """SES: the configuration set whose event destination (an SNS topic subscribed to
    ``/v1/webhooks/ses``) reports bounces, complaints, deliveries, opens and clicks."""
    region: str | None = None
    """SES region (default ``$AWS_DEFAULT_REGION``)."""
    endpoint_url: str | None = None
    """SES endpoint (moto, LocalStack); default ``$AWS_ENDPOINT_URL`` or AWS."""


@channels.register("email")
class EmailChannel(Channel):
    Options = EmailOptions
    address_field = "email"
    commits = True

    def __init__(self, options=None, config_dir=None) -> None:
        super().__init__(options, config_dir)
        self._smtp: smtplib.SMTP | None = None
        self._ses = None
        if self.options.provider == "ses":  # one API call, nothing to commit before
            self.commits = False

    @property
    def sender(self) -> str:
        return self.options.sender or os.environ.get("CEAP_EMAIL_FROM", "ceap@localhost")

    def validate_recipient(self, address: str | None) -> str | None:
        if not address:
            return super().validate_recipient(address)
        return None if _ADDRESS.match(address) else f"not an email address: {address!r}"

    def render(self, message: Message) -> None:
        super().render(message)
        message.html = render_html(message, self.config_dir)

    def send(self, messages: list[Message], commit: Commit | None = None) -> list[Result]:
        if self.options.provider == "ses":
            return [self._send_ses(m) for m in messages]
        return [self._send_smtp(m, commit) for m in messages]

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
            # The final dot goes out as its own small write after the commit: without this,
            # Nagle's algorithm holds it until the server's delayed ACK (~40 ms a message).
            smtp.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            if env.get("CEAP_SMTP_STARTTLS", "0").lower() in ("1", "true", "yes"):
                # Verified: the server's certificate against the system's CAs, or the bundle
                # in CEAP_SMTP_CA_FILE (a private relay), and its name against the host.
                context = ssl.create_default_context(cafile=env.get("CEAP_SMTP_CA_FILE") or None)
                smtp.starttls(context=context)
                smtp.ehlo()
            if env.get("CEAP_SMTP_USER"):
                # No initial response: smtplib's AUTH LOGIN with one answers the password
                # prompt with the user name again (bpo-27820) when PLAIN was refused first.
                smtp.login(env["CEAP_SMTP_USER"], env.get("CEAP_SMTP_PASSWORD", ""),
                           initial_response_ok=False)  # fmt: skip
            self._smtp = smtp
        return self._smtp

    def _send_smtp(self, message: Message, commit: Commit | None) -> Result:
        """One SMTP transaction, split at the end-of-data dot: everything up to it can be
        abandoned (a server discards a message whose connection drops before the dot), so the
        row is committed as sent right before the dot (``commit``) and a crash leaves it either
        unsent or recorded. After the dot the message is the server's (RFC 1047): a connection
        lost while waiting for its reply leaves it sent, marked unconfirmed."""
        data = _dot_stuffed(self._mime(message))
        try:
            smtp = self._open_transaction(message.address)
            smtp.send(data)
        except _Refused as exc:
            return Result(message.key, False, error=exc.reason, retryable=exc.retryable)
        except (smtplib.SMTPException, OSError) as exc:
            self.close()
            return Result(message.key, False, error=f"SMTP: {type(exc).__name__}: {exc}")
        if commit is not None and not commit(message):
            self._drop()  # the server discards the unterminated message
            return Result(message.key, False, error="lease lost before sending")
        provider_id = message_id(message.key)
        try:
            smtp.send(b".\r\n")
            code, reply = smtp.getreply()
        except (smtplib.SMTPException, OSError) as exc:
            self._drop()
            return Result(message.key, True, provider_id=provider_id,
                          extra={"unconfirmed": f"no reply after end of data: {exc}"})  # fmt: skip
        if code != 250:
            return Result(message.key, False, error=f"SMTP {code}: {reply!r}", retryable=code < 500)
        return Result(message.key, True, provider_id=provider_id)

    def _open_transaction(self, address: str) -> smtplib.SMTP:
        """MAIL, RCPT and DATA on the kept connection (re-opened once if the server dropped
        it); returns it ready for the message data."""
        for attempt in (1, 2):
            smtp = self._connection()
            try:
                smtp.ehlo_or_helo_if_needed()
                code, reply = smtp.mail(self.sender)
                break
            except smtplib.SMTPServerDisconnected:
                self._smtp = None  # a dropped keep-alive connection: reconnect once
                if attempt == 2:
                    raise
        if code != 250:
            smtp.rset()
            raise _Refused(f"SMTP sender refused: {code} {reply!r}", code < 500)
        code, reply = smtp.rcpt(address)
        if code not in (250, 251):
            smtp.rset()
            raise _Refused(f"SMTP refused recipient: {code}", code < 500)
        smtp.putcmd("data")
        code, reply = smtp.getreply()
        if code != 354:
            smtp.rset()
            raise _Refused(f"SMTP {code} to DATA: {reply!r}", code < 500)
        return smtp

    def _drop(self) -> None:
        """Closes the connection without QUIT (mid-transaction QUIT is not allowed)."""
        if self._smtp is not None:
            self._smtp.close()
            self._smtp = None

    def _mime(self, message: Message) -> bytes:
        return build(message, self.sender, self.options.tracking)

    # -- SES ------------------------------------------------------------------------------
    def _send_ses(self, message: Message) -> Result:
        """One ``SendRawEmail``: the same MIME message as SMTP (the simple API cannot carry
        the List-Unsubscribe headers), tagged with the row's key and sent through the
        configuration set, so SES's event notifications name the row."""
        if self._ses is None:
            self._ses = aws_client("ses", self.options.region, self.options.endpoint_url)
        request = {
            "Source": self.sender, "Destinations": [message.address],
            "RawMessage": {"Data": self._mime(message)},
            "Tags": [{"Name": "ceap_key", "Value": message.key},
                     {"Name": "campaign", "Value": message.campaign}],
        }  # fmt: skip
        if self.options.configuration_set:
            request["ConfigurationSetName"] = self.options.configuration_set
        return aws_result(message.key, self._ses.send_raw_email, **request)


class _Refused(Exception):
    """The server refused the transaction before the message data."""

    def __init__(self, reason: str, retryable: bool) -> None:
        super().__init__(reason)
        self.reason, self.retryable = reason, retryable


def _dot_stuffed(mail: bytes) -> bytes:
    """The message (CRLF lines) as SMTP DATA: leading dots doubled, ending in CRLF, without
    the terminating dot line."""
    data = re.sub(rb"(?m)^\.", b"..", mail)
    return data if data.endswith(b"\r\n") else data + b"\r\n"
