"""Signed tokens for the links CEAP puts in messages (unsubscribe, click, open pixel) and
the public URL that serves them (DESIGN §8).

A token binds an outbox row's idempotency key to one purpose (and, for a click, to the
exact URL it may redirect to), carries its signing time and is HMAC-SHA256 signed with
``CEAP_SIGNING_KEY`` (itsdangerous; signatures compared in constant time). It expires
after its purpose's lifetime. Without ``CEAP_SIGNING_KEY`` a random development key is
created once under ``CEAP_HOME``; with ``CEAP_ENV=production`` live sending and serving
refuse to start without one (``require_signing_key``): a key that lives on one machine's
disk cannot be shared by the senders and the API that verifies what they sent.

    CEAP_PUBLIC_URL=https://engage.example.com   # what customers' clients reach the API at
    CEAP_SIGNING_KEY=<32+ random bytes, e.g. `python -c "import secrets; print(secrets.token_urlsafe(32))"`>
"""

from __future__ import annotations

import hashlib
import os
import secrets
from datetime import timedelta
from enum import StrEnum
from functools import lru_cache
from pathlib import Path

from itsdangerous import BadSignature, SignatureExpired, URLSafeTimedSerializer

from ceap.errors import ConfigError
from ceap.home import ceap_home

DEFAULT_PUBLIC_URL = "http://127.0.0.1:8080"
MAX_TOKEN_CHARS = 2048
"""Longer is refused unread: a token is a URL path segment, not a payload."""
MIN_KEY_BYTES = 16


class Purpose(StrEnum):
    UNSUBSCRIBE = "u"
    CLICK = "c"
    OPEN = "o"


LIFETIME = {
    # RFC 8058: the unsubscribe link must keep working long after the mail was sent.
    Purpose.UNSUBSCRIBE: timedelta(days=365),
    Purpose.CLICK: timedelta(days=180),
    Purpose.OPEN: timedelta(days=90),
}


class TokenError(Exception):
    """A token that is not ours, was altered, or names another purpose (HTTP 400)."""


class TokenExpired(TokenError):
    """A genuine token past its lifetime (HTTP 410)."""


def production() -> bool:
    return os.environ.get("CEAP_ENV", "").strip().lower() == "production"


def public_url() -> str:
    """``CEAP_PUBLIC_URL`` without its trailing slash (default: the local API)."""
    return os.environ.get("CEAP_PUBLIC_URL", DEFAULT_PUBLIC_URL).rstrip("/")


def require_signing_key(what: str) -> None:
    """Refuses ``what`` (live sending, serving) in production without a configured key."""
    if production() and not os.environ.get("CEAP_SIGNING_KEY"):
        raise ConfigError(
            f"{what}: CEAP_ENV=production needs CEAP_SIGNING_KEY (the key that signs "
            "unsubscribe, click and open links, the same for senders and the Serving API)"
        )


def signing_key() -> bytes:
    """``CEAP_SIGNING_KEY``, else the development key under ``CEAP_HOME`` (created once)."""
    configured = os.environ.get("CEAP_SIGNING_KEY")
    if configured:
        key = configured.encode()
        if len(key) < MIN_KEY_BYTES:
            raise ConfigError(f"CEAP_SIGNING_KEY: at least {MIN_KEY_BYTES} bytes, please")
        return key
    return _dev_key(str(ceap_home().resolve()))


@lru_cache(maxsize=8)
def _dev_key(home: str) -> bytes:
    path = Path(home) / "signing.key"
    if not path.exists():
        path.parent.mkdir(parents=True, exist_ok=True)
        try:  # exclusive create: two processes starting together agree on one key
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        except FileExistsError:
            pass
        else:
            with os.fdopen(fd, "w") as out:
                out.write(secrets.token_urlsafe(32))
    return path.read_text().strip().encode()


def _serializer(purpose: Purpose) -> URLSafeTimedSerializer:
    return _serializer_for(signing_key(), purpose)


@lru_cache(maxsize=16)
def _serializer_for(key: bytes, purpose: Purpose) -> URLSafeTimedSerializer:
    """Built once per key and purpose: every email signs several links, every click and
    pixel verifies one (a changed key is a new entry)."""
    return URLSafeTimedSerializer(
        key, salt=f"ceap-{purpose.value}", signer_kwargs={"digest_method": hashlib.sha256}
    )


def sign(purpose: Purpose, key: str, url: str | None = None) -> str:
    """A token for the outbox row ``key`` (and, for a click, the URL it leads to)."""
    return _serializer(purpose).dumps([key, url] if url is not None else [key])


def verify(purpose: Purpose, token: str) -> tuple[str, str | None]:
    """``(idempotency key, url or None)`` of a valid token; TokenError / TokenExpired."""
    if len(token) > MAX_TOKEN_CHARS:
        raise TokenError("token too long")
    try:
        value = _serializer(purpose).loads(token, max_age=LIFETIME[purpose].total_seconds())
    except SignatureExpired:
        raise TokenExpired("token expired") from None
    except BadSignature:
        raise TokenError("invalid token") from None
    if not isinstance(value, list) or not 1 <= len(value) <= 2:
        raise TokenError("invalid token")
    if not all(isinstance(v, str) for v in value):
        raise TokenError("invalid token")
    return value[0], (value[1] if len(value) == 2 else None)


def link(purpose: Purpose, key: str, url: str | None = None) -> str:
    """The public URL of a token: ``/u/{t}``, ``/c/{t}`` or ``/o/{t}.gif``."""
    suffix = ".gif" if purpose is Purpose.OPEN else ""
    return f"{public_url()}/{purpose.value}/{sign(purpose, key, url)}{suffix}"
