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
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

from ceap.tokens import Purpose, link
from channels import mime
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


def build(message: Message, sender: str, tracking: bool) -> bytes:
    """The MIME message for a rendered ``message`` (subject, body, html), as the bytes that
    go out (CRLF line ends, before SMTP's dot-stuffing); written by ``channels/mime.py``."""
    unsubscribe = link(Purpose.UNSUBSCRIBE, message.key)
    text = tracked_text(message.body, message) if tracking else message.body
    headers = [
        mime.address_header("From", sender),
        mime.address_header("To", message.address),
        mime.header("Subject", message.subject or message.action),
        mime.date_header(),
        mime.header("Message-ID", message_id(message.key)),
        # RFC 8058: one line, exactly as mail clients look for them.
        mime.header("List-Unsubscribe", f"<{unsubscribe}>", fold=False),
        mime.header("List-Unsubscribe-Post", "List-Unsubscribe=One-Click"),
        mime.header("X-CEAP-Idempotency-Key", message.key),
        mime.header("X-CEAP-Campaign", message.campaign),
    ]
    page = None
    if message.html is not None:
        page = tracked_html(message.html, message) if tracking else message.html
        pixel = link(Purpose.OPEN, message.key) if tracking else None
        page = with_html_footer(page, unsubscribe, pixel)
    return mime.message(headers, with_footer(text, unsubscribe), page)


def message_id(key: str) -> str:
    """The ``Message-ID`` of the row's email: stable across attempts, so a provider's
    feedback naming it maps back to the row."""
    return f"<{key}@ceap>"
