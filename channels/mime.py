"""Writes the emails CEAP sends as bytes, without building the stdlib ``email`` package's
header objects: under its default policy, parsing and re-folding a message's dozen headers
took ~2 ms, more than the rest of an SMTP send (bench/dispatch.py fell from ~490 to ~270
messages/s when emails became multipart with RFC 8058 headers).

The shapes are few and fixed: headers, then one ``text/plain`` part or a
``multipart/alternative`` of ``text/plain`` and ``text/html``, all UTF-8, CRLF line ends.

- A header value of printable ASCII is written as is when its line fits in 78 characters;
  a longer single token (a Message-ID, a URI) goes on a continuation line after the colon,
  or stays on one line when ``fold=False`` (``List-Unsubscribe``: a ``<URI>`` that mail
  clients read from the raw header; RFC 5322 allows 998 characters).
- Text that is not plain ASCII (or holds ``=?``, which readers would decode) becomes UTF-8
  encoded words (RFC 2047, ``email.header.Header``), which read back exactly: the SMTP
  policy's folding of mixed text doubles the space before an encoded word. A long ASCII
  text and an address that is not a plain ``local@domain`` (a display name, quoting,
  non-ASCII) are folded by the SMTP policy, as before. Both cached by value: senders and
  subjects repeat.
- CR or LF in a value is refused (``ValueError``): a header cannot smuggle in another.
- Bodies are 7bit when every line is ASCII and at most 78 bytes, else quoted-printable or
  base64, whichever is shorter (the ``email`` package's own rule, done in C by binascii).
"""

from __future__ import annotations

import base64
import binascii
import random
import re
from datetime import UTC, datetime
from email.header import Header
from email.policy import SMTP
from email.utils import format_datetime
from functools import lru_cache

CRLF = b"\r\n"
MAX_LINE = 78
MAX_HEADER_LINE = 998
_PRINTABLE = re.compile(r"[\x20-\x7e]*")
_PLAIN_ADDRESS = re.compile(r"[A-Za-z0-9!#$%&'*+/=?^_`{|}~-]+(\.[A-Za-z0-9!#$%&'*+/=?^_`{|}~-]+)*"
                            r"@[A-Za-z0-9-]+(\.[A-Za-z0-9-]+)*")  # fmt: skip


def header(name: str, value: str, fold: bool = True) -> bytes:
    """``Name: value`` and its CRLF, folded as the module docstring says."""
    if "\r" in value or "\n" in value:
        raise ValueError(f"{name}: header values may not contain CR or LF")
    if not _PRINTABLE.fullmatch(value) or "=?" in value:
        return _encoded(name, value)
    length = len(name) + 2 + len(value)
    if length <= MAX_LINE or (not fold and length <= MAX_HEADER_LINE):
        return f"{name}: {value}\r\n".encode("ascii")
    if " " not in value and len(value) < MAX_HEADER_LINE:
        return f"{name}:\r\n {value}\r\n".encode("ascii")
    return _policy_folded(name, value)


def address_header(name: str, value: str) -> bytes:
    """An address header (``From``, ``To``): a plain ``local@domain`` as is, any other form
    (a display name, quoting, non-ASCII) through the SMTP policy's address parser."""
    if _PLAIN_ADDRESS.fullmatch(value) and len(name) + 2 + len(value) <= MAX_LINE:
        return f"{name}: {value}\r\n".encode("ascii")
    if "\r" in value or "\n" in value:
        raise ValueError(f"{name}: header values may not contain CR or LF")
    return _policy_folded(name, value)


@lru_cache(maxsize=4096)
def _encoded(name: str, value: str) -> bytes:
    folded = Header(value, "utf-8", header_name=name).encode(linesep="\r\n")
    return f"{name}: {folded}\r\n".encode("ascii")


@lru_cache(maxsize=4096)
def _policy_folded(name: str, value: str) -> bytes:
    return SMTP.fold_binary(*SMTP.header_store_parse(name, value))


def date_header(now: datetime | None = None) -> bytes:
    """``Date`` (RFC 5322 requires it: the origination time), in UTC."""
    return header("Date", format_datetime(now or datetime.now(UTC)))


def text_part(text: str, subtype: str) -> tuple[bytes, bytes]:
    """(its Content-Type and Content-Transfer-Encoding headers, its encoded body)."""
    lines = text.encode("utf-8").splitlines()
    body = CRLF.join(lines) + CRLF
    if max(map(len, lines), default=0) <= MAX_LINE and body.isascii():
        cte = "7bit"
    else:
        qp = binascii.b2a_qp(body, istext=True)
        b64 = base64.encodebytes(body).replace(b"\n", CRLF)
        cte, body = ("base64", b64) if len(b64) < len(qp) else ("quoted-printable", qp)
    head = (f'Content-Type: text/{subtype}; charset="utf-8"\r\n'
            f"Content-Transfer-Encoding: {cte}\r\n").encode("ascii")  # fmt: skip
    return head, body


def message(headers: list[bytes], text: str, html: str | None = None) -> bytes:
    """The whole message: ``headers`` (each from ``header``/``address_header``), MIME-Version,
    then the text part alone or text and ``html`` as multipart/alternative."""
    parts = [text_part(text, "plain")]
    if html is not None:
        parts.append(text_part(html, "html"))
    out = [*headers, b"MIME-Version: 1.0\r\n"]
    if len(parts) == 1:
        head, body = parts[0]
        return b"".join([*out, head, CRLF, body])
    boundary = _boundary(parts)
    out.append(f'Content-Type: multipart/alternative;\r\n boundary="{boundary}"\r\n\r\n'.encode())
    delimiter = f"--{boundary}\r\n".encode()
    for head, body in parts:
        out += [delimiter, head, CRLF, body, CRLF]
    out.append(f"--{boundary}--\r\n".encode())
    return b"".join(out)


def _boundary(parts: list[tuple[bytes, bytes]]) -> str:
    """A boundary that no part contains (as the ``email`` package makes them)."""
    while True:
        boundary = f"{'=' * 15}{random.randrange(2**63)}=="  # noqa: S311 - not a secret
        if not any(boundary.encode() in body for _, body in parts):
            return boundary
