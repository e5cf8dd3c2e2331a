"""A stand-in for Amazon SNS on loopback, for the SES webhook's tests and bench/serving.py: a
test CA, an HTTPS server on 127.0.0.1 (a free port) serving SNS-style signing certificates
and answering subscription confirmations (every GET recorded), and ``sign`` to sign a
message as SNS does (SignatureVersion 1: SHA1withRSA, 2: SHA256withRSA)."""

from __future__ import annotations

import base64
import ipaddress
import json
import ssl
import threading
import uuid
from datetime import UTC, datetime, timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import padding, rsa
from cryptography.x509.oid import NameOID

from serving.sns import SIGNED_FIELDS, SnsVerifier

TOPIC = "arn:aws:sns:us-east-1:123456789012:ceap-ses-events"
CERT_PATH = "/SimpleNotificationService-0000000000000000000000.pem"
HOSTS = r"127\.0\.0\.1"
"""The stub's host, as ``CEAP_SNS_CERT_HOSTS`` (the verifier's ``cert_hosts``)."""


def _name(common_name: str) -> x509.Name:
    return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name)])


def certificate(
    subject: str, key: rsa.RSAPrivateKey, issuer: tuple[x509.Certificate, rsa.RSAPrivateKey] | None = None,
    ca: bool = False, ip: str | None = None, days: tuple[int, int] = (-1, 30),
) -> x509.Certificate:  # fmt: skip
    """A certificate for ``key``: self-signed, or signed by ``issuer`` (cert, key)."""
    now = datetime.now(UTC)
    issuer_name, signer = (issuer[0].subject, issuer[1]) if issuer else (_name(subject), key)
    builder = (
        x509.CertificateBuilder()
        .subject_name(_name(subject))
        .issuer_name(issuer_name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now + timedelta(days=days[0]))
        .not_valid_after(now + timedelta(days=days[1]))
        .add_extension(x509.BasicConstraints(ca=ca, path_length=None), critical=True)
    )
    if ip:
        san = x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address(ip))])
        builder = builder.add_extension(san, critical=False)
    return builder.sign(signer, hashes.SHA256())


def new_key() -> rsa.RSAPrivateKey:
    return rsa.generate_private_key(public_exponent=65537, key_size=2048)


def pem(cert: x509.Certificate) -> bytes:
    return cert.public_bytes(serialization.Encoding.PEM)


class SnsStub:
    """SNS's HTTPS host on 127.0.0.1. Serves ``CERT_PATH`` (the signing certificate),
    ``/expired.pem``, ``/other.pem`` (another key's), ``/broken.pem`` (no certificate);
    ``/missing.pem`` answers 404 and ``/down.pem`` 500; any other path answers 200 (a
    subscription confirmation). ``gets`` lists every path asked for."""

    def __init__(self, root: Path) -> None:
        ca_key, self.key, self.other_key = new_key(), new_key(), new_key()
        ca = certificate("CEAP test CA", ca_key, ca=True)
        tls_key = new_key()
        tls = certificate("127.0.0.1", tls_key, issuer=(ca, ca_key), ip="127.0.0.1")
        root.mkdir(parents=True, exist_ok=True)
        self.ca_file = root / "ca.pem"
        self.ca_file.write_bytes(pem(ca))
        (root / "tls.pem").write_bytes(pem(tls))
        (root / "tls.key").write_bytes(tls_key.private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption()))  # fmt: skip
        self.files = {
            CERT_PATH: pem(certificate("sns.amazonaws.com", self.key)),
            "/expired.pem": pem(certificate("sns.amazonaws.com", self.key, days=(-30, -1))),
            "/other.pem": pem(certificate("sns.amazonaws.com", self.other_key)),
            "/broken.pem": b"not a certificate",
        }
        self.gets: list[str] = []
        server_tls = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        server_tls.load_cert_chain(root / "tls.pem", root / "tls.key")
        self._server = ThreadingHTTPServer(("127.0.0.1", 0), self._handler())
        self._server.socket = server_tls.wrap_socket(self._server.socket, server_side=True)
        self.port = self._server.server_address[1]
        threading.Thread(target=self._server.serve_forever, daemon=True).start()

    def _handler(self) -> type[BaseHTTPRequestHandler]:
        stub = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self):  # noqa: N802 - http.server's hook name
                stub.gets.append(self.path)
                status = {"/missing.pem": 404, "/down.pem": 500}.get(self.path, 200)
                body = stub.files.get(self.path, b"<ConfirmSubscriptionResponse/>")
                self.send_response(status)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *args):
                pass

        return Handler

    def url(self, path: str = CERT_PATH, host: str = "127.0.0.1", scheme: str = "https") -> str:
        return f"{scheme}://{host}:{self.port}{path}"

    def client_tls(self) -> ssl.SSLContext:
        return ssl.create_default_context(cafile=str(self.ca_file))

    def verifier(self, **kw) -> SnsVerifier:
        """A verifier that trusts this host (and only it)."""
        return SnsVerifier(cert_hosts=HOSTS, tls=self.client_tls(), **kw)

    def sign(self, message: dict, version: str = "2", key: rsa.RSAPrivateKey | None = None) -> dict:
        """``message`` with SNS's signature fields (its SigningCertURL kept when given)."""
        message = {"SigningCertURL": self.url(), **message, "SignatureVersion": version}
        text = "".join(
            f"{f}\n{message[f]}\n" for f in SIGNED_FIELDS[message["Type"]] if f in message
        )
        digest = hashes.SHA1() if version == "1" else hashes.SHA256()  # noqa: S303 - SNS's v1
        signature = (key or self.key).sign(text.encode(), padding.PKCS1v15(), digest)
        return {**message, "Signature": base64.b64encode(signature).decode()}

    def notification(
        self, event: dict, message_id: str | None = None, version: str = "2",
        key: rsa.RSAPrivateKey | None = None, **fields: str,
    ) -> dict:  # fmt: skip
        """A signed SNS Notification carrying the SES ``event`` (``fields`` added/replaced)."""
        return self.sign({
            "Type": "Notification", "MessageId": message_id or str(uuid.uuid4()), "TopicArn": TOPIC,
            "Message": json.dumps(event), "Timestamp": "2024-03-01T13:00:01.000Z",
            "UnsubscribeURL": self.url("/?Action=Unsubscribe"), **fields,
        }, version, key)  # fmt: skip

    def close(self) -> None:
        self._server.shutdown()
        self._server.server_close()
