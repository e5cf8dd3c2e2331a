"""An email as it goes out (DESIGN §8): a valid RFC 5322 message with a text part and, when
the template has one, an HTML part; ``Date`` and ``Message-ID``; RFC 8058 one-click
unsubscribe (``List-Unsubscribe`` + ``List-Unsubscribe-Post``) and an unsubscribe link in
the footer; links rewritten to signed click URLs (``/c/{token}``) and an open pixel
(``/o/{token}.gif``) in the HTML part.

Every link token names the outbox row (its idempotency key), so a click, an open or an
unsubscribe maps back to the program, customer, subject and channel that caused it.
"""

from __future__ import annotations

import html
import re
from email.message import EmailMessage
from email.utils import formatdate
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

from ceap.tokens import Purpose, link
from channels.messages import Message

_TEXT_LINK = re.compile(r"https?://[^\s<>\"')]+")
_HREF = re.compile(r"""(\bhref\s*=\s*)(["'])(https?://[^"'<>\s]+)\2""", re.IGNORECASE)
_BODY_END = re.compile(r"</body\s*>", re.IGNORECASE)


def track(url: str, message: Message) -> str:
    """``url`` with utm_source/medium/campaign and ceap_key query parameters added (for the
    destination's own analytics; CEAP counts the click at ``/c/``)."""
    parts = urlsplit(url)
    query = parse_qsl(parts.query, keep_blank_values=True)
    query += [("utm_source", "ceap"), ("utm_medium", message.channel),
              ("utm_campaign", message.campaign), ("ceap_key", message.key)]  # fmt: skip
    return urlunsplit(parts._replace(query=urlencode(query)))


def click_url(url: str, message: Message) -> str:
    return link(Purpose.CLICK, message.key, track(url, message))


def tracked_text(body: str, message: Message) -> str:
    """The text part with each link going through its signed click URL."""
    return _TEXT_LINK.sub(lambda m: click_url(m.group(0), message), body)


def tracked_html(body: str, message: Message) -> str:
    """The HTML part with each ``href`` going through its signed click URL (the href is
    unescaped first: ``&amp;`` in HTML is ``&`` in the URL the customer reaches)."""

    def swap(m: re.Match) -> str:
        target = click_url(html.unescape(m.group(3)), message)
        return f"{m.group(1)}{m.group(2)}{html.escape(target)}{m.group(2)}"

    return _HREF.sub(swap, body)


def with_footer(body: str, unsubscribe: str) -> str:
    return f"{body}\n\n--\nTo stop these emails: {unsubscribe}\n"


def with_html_footer(body: str, unsubscribe: str, pixel: str | None) -> str:
    footer = (
        '<p style="font-size:12px;color:#777">'
        f'<a href="{html.escape(unsubscribe)}">Unsubscribe</a> from these emails.</p>'
    )
    if pixel is not None:
        footer += (
            f'<img src="{html.escape(pixel)}" width="1" height="1" alt="" style="display:none">'
        )
    end = _BODY_END.search(body)
    return body[: end.start()] + footer + body[end.start() :] if end else body + footer


def build(message: Message, sender: str, tracking: bool) -> EmailMessage:
    """The MIME message for a rendered ``message`` (subject, body, html)."""
    unsubscribe = link(Purpose.UNSUBSCRIBE, message.key)
    text = tracked_text(message.body, message) if tracking else message.body
    mail = EmailMessage()
    mail["From"] = sender
    mail["To"] = message.address
    mail["Subject"] = message.subject or message.action
    mail["Date"] = formatdate(usegmt=True)  # RFC 5322 requires it (origination time)
    mail["Message-ID"] = message_id(message.key)
    mail["List-Unsubscribe"] = f"<{unsubscribe}>"
    mail["List-Unsubscribe-Post"] = "List-Unsubscribe=One-Click"
    mail["X-CEAP-Idempotency-Key"] = message.key
    mail["X-CEAP-Campaign"] = message.campaign
    mail.set_content(with_footer(text, unsubscribe))
    if message.html is not None:
        page = tracked_html(message.html, message) if tracking else message.html
        pixel = link(Purpose.OPEN, message.key) if tracking else None
        mail.add_alternative(with_html_footer(page, unsubscribe, pixel), subtype="html")
    return mail


def message_id(key: str) -> str:
    """The ``Message-ID`` of the row's email: stable across attempts, so a provider's
    feedback naming it maps back to the row."""
    return f"<{key}@ceap>"
