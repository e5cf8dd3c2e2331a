"""Amazon SNS messages to an HTTP(S) endpoint (the SES webhook, DESIGN §8): the envelope
parsed, its signature verified, subscriptions confirmed.

The guarantee: a message is acted on only when its ``Signature`` verifies (SHA1withRSA for
``SignatureVersion`` 1, SHA256withRSA for 2) over the documented fields in their documented
order, with the certificate at ``SigningCertURL``, fetched over HTTPS (chain and host name
checked by TLS) from a host matching ``CEAP_SNS_CERT_HOSTS`` (default: any
``sns.<region>.amazonaws.com[.cn]``) and currently valid; and, when ``CEAP_SNS_TOPICS``
names topics, only when its ``TopicArn`` is one of them. A subscription is confirmed under
the same conditions, by GETting its ``SubscribeURL`` when that is HTTPS on an allowed host.

The limit: SNS signs no audience and no expiry, so a captured message can be posted again;
the receiver makes that harmless (each event is kept once per SNS ``MessageId``).

Certificates are cached per URL (SNS rotates them rarely). When a certificate cannot be had
right now (network, timeout, the host's 5xx) the message is answered 503: SNS retries 5xx
answers only, and a lost bounce would leave a dead address unsuppressed.
"""

from __future__ import annotations

import base64
import binascii
import json
import os
import re
import ssl
from collections import OrderedDict
from collections.abc import Awaitable, Callable, Iterable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime

import httpx
from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import padding, rsa

DEFAULT_CERT_HOSTS = r"sns\.[a-z0-9-]+\.amazonaws\.com(\.cn)?"
"""SNS's certificate (and subscription) hosts: ``sns.us-east-1.amazonaws.com``, China's
``sns.cn-north-1.amazonaws.com.cn``."""
_CONFIRMATION = ("Message", "MessageId", "SubscribeURL", "Timestamp", "Token", "TopicArn", "Type")
SIGNED_FIELDS = {
    "Notification": ("Message", "MessageId", "Subject", "Timestamp", "TopicArn", "Type"),
    "SubscriptionConfirmation": _CONFIRMATION,
    "UnsubscribeConfirmation": _CONFIRMATION,
}
"""The fields each message type's signature covers, in the order of the string to sign."""
OPTIONAL_FIELDS = frozenset({"Subject"})
HASHES = {"1": hashes.SHA1, "2": hashes.SHA256}
MAX_CERT_BYTES = 64 * 1024
CACHED_CERTS = 32

Fetch = Callable[[str], Awaitable[tuple[int, bytes]]]
"""GET ``url`` -> (HTTP status, body); raises ``SnsRefused(503)`` when it cannot be reached."""


class SnsRefused(Exception):
    """Why a message is not acted on, as the HTTP status to answer: 400 malformed, 401 not
    verifiable, 403 a topic or URL not allowed, 503 cannot verify or confirm right now."""

    def __init__(self, status: int, reason: str) -> None:
        super().__init__(reason)
        self.status, self.reason = status, reason


@dataclass(frozen=True)
class Envelope:
    """One SNS message: its ``Type``, ``MessageId``, ``TopicArn``, ``Message`` (for SES a
    JSON document) and every string field as received (``fields``: what the signature
    covers, ``Signature``, ``SigningCertURL``, ``SubscribeURL``...)."""

    type: str
    message_id: str
    topic_arn: str
    message: str
    fields: Mapping[str, str]

    def string_to_sign(self) -> bytes:
        """``Name\\nvalue\\n`` for each signed field present, in the documented order."""
        parts = []
        for name in SIGNED_FIELDS[self.type]:
            if name in self.fields:
                parts += [name, "\n", self.fields[name], "\n"]
        return "".join(parts).encode()


def parse(body: bytes, type_header: str | None = None) -> Envelope:
    """The SNS message in a request ``body`` (SNS posts JSON as ``text/plain``);
    ``type_header`` is ``x-amz-sns-message-type``, which must agree when present."""
    try:
        data = json.loads(body)
    except (ValueError, RecursionError):  # UnicodeDecodeError is a ValueError
        raise SnsRefused(400, "the body is not an SNS message (JSON)") from None
    if not isinstance(data, dict) or data.get("Type") not in SIGNED_FIELDS:
        raise SnsRefused(400, "not an SNS message of a known Type")
    kind = data["Type"]
    if type_header is not None and type_header != kind:
        raise SnsRefused(400, "x-amz-sns-message-type does not match the message's Type")
    needed = [f for f in SIGNED_FIELDS[kind] if f not in OPTIONAL_FIELDS]
    needed += ["Signature", "SignatureVersion", "SigningCertURL"]
    wrong = [f for f in needed if not isinstance(data.get(f), str)]
    wrong += [f for f in OPTIONAL_FIELDS if f in data and not isinstance(data[f], str)]
    if wrong:
        raise SnsRefused(400, f"missing or not text: {', '.join(sorted(wrong))}")
    if data["SignatureVersion"] not in HASHES:
        raise SnsRefused(400, "SignatureVersion must be 1 or 2")
    fields = {k: v for k, v in data.items() if isinstance(v, str)}
    return Envelope(kind, data["MessageId"], data["TopicArn"], data["Message"], fields)


class SnsVerifier:
    """Verifies SNS messages and confirms subscriptions; kept on ``app.state.sns`` (built
    from the environment on first use; tests put their own there).

    Args:
        cert_hosts: regular expression the whole host name of ``SigningCertURL`` and
            ``SubscribeURL`` must match (case-insensitive).
        topics: the topic ARNs accepted; empty accepts any.
        tls: httpx's ``verify`` (True: the system's CAs; an ``ssl.SSLContext`` for a test CA).
        timeout: seconds per fetch.
        fetch: replaces the HTTPS GET (certificates and subscription confirmations).
    """

    def __init__(
        self,
        cert_hosts: str = DEFAULT_CERT_HOSTS,
        topics: Iterable[str] = (),
        tls: ssl.SSLContext | bool = True,
        timeout: float = 5.0,
        fetch: Fetch | None = None,
    ) -> None:
        self.hosts = re.compile(cert_hosts, re.IGNORECASE)
        self.topics = frozenset(topics)
        self.tls, self.timeout = tls, timeout
        self.fetch: Fetch = fetch or self._get
        self._certs: OrderedDict[str, x509.Certificate] = OrderedDict()

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> SnsVerifier:
        """``CEAP_SNS_CERT_HOSTS`` (a regular expression) and ``CEAP_SNS_TOPICS`` (ARNs,
        comma-separated)."""
        env = os.environ if env is None else env
        topics = [t.strip() for t in env.get("CEAP_SNS_TOPICS", "").split(",") if t.strip()]
        return cls(cert_hosts=env.get("CEAP_SNS_CERT_HOSTS") or DEFAULT_CERT_HOSTS, topics=topics)

    def allowed(self, url: str) -> bool:
        """HTTPS, no user info, on an allowed host; parsed as httpx, which fetches it, would."""
        try:
            parts = httpx.URL(url)
        except (httpx.InvalidURL, TypeError):
            return False
        host = parts.host
        return (
            parts.scheme == "https"
            and not parts.userinfo
            and bool(host)
            and self.hosts.fullmatch(host) is not None
        )

    async def verify(self, envelope: Envelope) -> None:
        """Raises ``SnsRefused`` unless ``envelope`` is from an accepted topic and signed
        with the certificate its ``SigningCertURL`` names."""
        if self.topics and envelope.topic_arn not in self.topics:
            raise SnsRefused(403, "topic not accepted (CEAP_SNS_TOPICS)")
        url = envelope.fields["SigningCertURL"]
        if url not in self._certs and not self.allowed(url):  # cached: allowed when fetched
            raise SnsRefused(401, "SigningCertURL is not HTTPS on an SNS host")
        try:
            signature = base64.b64decode(envelope.fields["Signature"], validate=True)
        except (binascii.Error, ValueError):
            raise SnsRefused(401, "Signature is not base64") from None
        key = (await self.certificate(url)).public_key()
        if not isinstance(key, rsa.RSAPublicKey):
            raise SnsRefused(401, "the signing certificate's key is not RSA")
        digest = HASHES[envelope.fields["SignatureVersion"]]()
        try:
            key.verify(signature, envelope.string_to_sign(), padding.PKCS1v15(), digest)
        except InvalidSignature:
            raise SnsRefused(401, "bad signature") from None

    async def certificate(self, url: str) -> x509.Certificate:
        """The certificate at ``url``, cached; it must be valid now."""
        cert = self._certs.get(url)
        if cert is None:
            status, body = await self.fetch(url)
            if status != 200:
                raise _fetch_failed(status, "the signing certificate")
            try:
                cert = x509.load_pem_x509_certificate(body)
            except ValueError:
                raise SnsRefused(401, "SigningCertURL holds no PEM certificate") from None
            self._certs[url] = cert
            while len(self._certs) > CACHED_CERTS:
                self._certs.popitem(last=False)
        else:
            self._certs.move_to_end(url)
        now = datetime.now(UTC)
        if not cert.not_valid_before_utc <= now <= cert.not_valid_after_utc:
            raise SnsRefused(401, "the signing certificate is not valid now")
        return cert

    async def confirm(self, envelope: Envelope) -> None:
        """GETs a verified ``SubscriptionConfirmation``'s ``SubscribeURL`` (which confirms
        the subscription), when that URL is HTTPS on an allowed host."""
        url = envelope.fields["SubscribeURL"]
        if not self.allowed(url):
            raise SnsRefused(403, "SubscribeURL is not HTTPS on an SNS host")
        status, _ = await self.fetch(url)
        if status != 200:
            raise SnsRefused(503, f"the subscription was not confirmed (HTTP {status})")

    async def _get(self, url: str) -> tuple[int, bytes]:
        try:
            async with (
                httpx.AsyncClient(verify=self.tls, timeout=self.timeout) as client,
                client.stream("GET", url) as response,
            ):
                body = b""
                async for chunk in response.aiter_bytes():
                    body += chunk
                    if len(body) > MAX_CERT_BYTES:
                        return 413, b""
                return response.status_code, body
        except httpx.HTTPError as exc:
            raise SnsRefused(503, f"{url} cannot be reached: {type(exc).__name__}") from None


def _fetch_failed(status: int, what: str) -> SnsRefused:
    """A 5xx or 429 from SNS's host is for later (503: SNS retries); anything else, never."""
    if status >= 500 or status == 429:
        return SnsRefused(503, f"{what} cannot be fetched now (HTTP {status})")
    return SnsRefused(401, f"{what} cannot be fetched (HTTP {status})")
