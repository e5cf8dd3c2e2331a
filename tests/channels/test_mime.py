"""The email writer (channels/mime.py) against the stdlib's: the same message, read back by
``email`` under the default policy, as ``EmailMessage`` + ``as_bytes(policy=SMTP)`` built it
before (the reference below); and the RFC 8058 headers written exactly, on one line."""

from __future__ import annotations

import re
from email import message_from_bytes, policy
from email.message import EmailMessage

import pytest

from channels import mime
from channels.email import _dot_stuffed
from channels.email_message import build
from channels.messages import Message

HTML = "<html><body><p>Bonjour, <a href='https://shop.example/p?a=1&amp;b=2'>voir</a></p></body></html>"
CASES = {
    "ascii": ("ceap@example.com", "c1@example.com", "How was your Kettle?", "See https://shop.example/x", HTML),
    "text only": ("ceap@example.com", "c1@example.com", "Hi", "Plain text, no links.", None),
    "non-ascii subject and name": (
        "Boutique Café <shop@example.com>", "c1@example.com",
        "Wie war Ihr Wasserkocher? Schreiben Sie uns eine kurze Bewertung über das Produkt, ÄÖÜ",
        "Grüße aus Köln: https://shop.example/ü?x=1\n" + "é" * 200, HTML.replace("voir", "voir ✓"),
    ),
    "long ascii subject": (
        '"Doe, J." <j@example.com>', "c.d+tag@example.com",
        "A long subject that goes on and on and on and on and on past seventy-eight characters",
        ".a line starting with a dot\n" + "x" * 300, None,
    ),
    "encoded-word lookalike": ("ceap@example.com", "c1@example.com", "=?utf-8?q?Free?= money", "x", None),
    "cjk body": ("ceap@example.com", "c1@example.com", "レビューをお願いします", "ご購入ありがとうございました。" * 20, None),
}  # fmt: skip


def message(sender: str, to: str, subject: str, body: str, html: str | None) -> Message:
    m = Message(
        key="k" * 64, program="reviews", customer_id="C1", subject_id="P1", channel="email",
        action="review", subject_type="product", template=None, context={}, recipient={},
        send_after="2024-03-01T12:00:00Z", address=to, subject=subject, body=body, html=html,
    )  # fmt: skip
    return m


def reference(raw: bytes, m: Message, sender: str) -> EmailMessage:
    """What the stdlib made of the same content (headers copied from ``raw``: the tokens in
    the links carry their signing time)."""
    ours = message_from_bytes(raw, policy=policy.default)
    mail = EmailMessage()
    for name in ("From", "To", "Subject", "Date", "Message-ID", "List-Unsubscribe",
                 "List-Unsubscribe-Post", "X-CEAP-Idempotency-Key", "X-CEAP-Campaign"):  # fmt: skip
        copied = str(ours[name]).strip()  # unfolded: a folded value keeps its leading space
        mail[name] = {"From": sender, "To": m.address, "Subject": m.subject}.get(name, copied)
    mail.set_content(ours.get_body(("plain",)).get_content())
    if m.html is not None:
        mail.add_alternative(ours.get_body(("html",)).get_content(), subtype="html")
    return message_from_bytes(mail.as_bytes(policy=policy.SMTP), policy=policy.default)


@pytest.mark.parametrize("case", sorted(CASES))
def test_reads_back_as_the_stdlib_message(case, monkeypatch):
    monkeypatch.setenv("CEAP_PUBLIC_URL", "https://engage.example.com")
    monkeypatch.setenv("CEAP_SIGNING_KEY", "s" * 32)
    sender, to, subject, body, html = CASES[case]
    m = message(sender, to, subject, body, html)
    raw = build(m, sender, tracking=True)
    assert b"\n" not in raw.replace(b"\r\n", b"") and raw.endswith(b"\r\n")
    assert all(len(line) <= 998 for line in raw.split(b"\r\n"))
    ours = message_from_bytes(raw, policy=policy.default)
    theirs = reference(raw, m, sender)
    assert not ours.defects and not any(p.defects for p in ours.walk())
    assert ours.get_content_type() == theirs.get_content_type()
    assert ours.get_content_type() == ("multipart/alternative" if html else "text/plain")
    for name in ("From", "To", "Subject", "Message-ID", "List-Unsubscribe",
                 "List-Unsubscribe-Post", "X-CEAP-Idempotency-Key", "X-CEAP-Campaign"):  # fmt: skip
        if name != "Subject":  # the stdlib's folding adds a space before an encoded word
            assert str(ours[name]).strip() == str(theirs[name]).strip(), name
    assert str(ours["Subject"]) == subject and ours["Date"].datetime is not None
    for kind in ("plain", "html"):
        a, b = ours.get_body((kind,)), theirs.get_body((kind,))
        assert (a is None) == (b is None)
        if a is not None:
            # Base64 text is encoded in canonical form, CRLF line ends (RFC 2046 4.1.1); the
            # stdlib encodes LF, and its reader hands back whatever was encoded.
            crlf = "\r\n"
            assert a.get_content().replace(crlf, "\n") == b.get_content().replace(crlf, "\n")
            assert a.get_content_charset() == "utf-8"
    assert (
        "é" * 200 in ours.get_body(("plain",)).get_content() or case != "non-ascii subject and name"
    )


def test_rfc_8058_headers_are_written_exactly_on_one_line(monkeypatch):
    monkeypatch.setenv("CEAP_PUBLIC_URL", "https://engage.example.com")
    monkeypatch.setenv("CEAP_SIGNING_KEY", "s" * 32)
    raw = build(message(*CASES["ascii"]), "ceap@example.com", tracking=True)
    lines = raw.split(b"\r\n\r\n", 1)[0].split(b"\r\n")
    (unsubscribe,) = [line for line in lines if line.startswith(b"List-Unsubscribe:")]
    assert re.fullmatch(rb"List-Unsubscribe: <https://engage\.example\.com/u/[\w.-]+>", unsubscribe)
    assert b"List-Unsubscribe-Post: List-Unsubscribe=One-Click" in lines


def test_a_line_starting_with_a_dot_is_stuffed_and_reads_back():
    raw = mime.message([mime.header("Subject", "dots")], ".hidden\n..two\nok")
    data = _dot_stuffed(raw)
    assert b"\r\n..hidden\r\n...two\r\n" in data and data.endswith(b"\r\n")
    read = message_from_bytes(raw, policy=policy.default).get_content()
    assert read == ".hidden\r\n..two\r\nok\r\n"


@pytest.mark.parametrize("value", ["a\r\nBcc: x@example.com", "a\nb", "a\rb"])
def test_a_header_cannot_carry_another(value):
    with pytest.raises(ValueError, match="CR or LF"):
        mime.header("Subject", value)
    with pytest.raises(ValueError, match="CR or LF"):
        mime.address_header("To", value)


def test_the_boundary_is_in_no_part(monkeypatch):
    draws = iter([7, 7, 8])
    monkeypatch.setattr(mime.random, "randrange", lambda _: next(draws))
    raw = mime.message([], f"{'=' * 15}7== inside the text", "<p>x</p>")
    assert f'boundary="{"=" * 15}8=="'.encode() in raw
