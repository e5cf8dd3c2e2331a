"""SMTP with STARTTLS and AUTH against a real aiosmtpd server on loopback that requires both:
the server's certificate is verified (a private CA through CEAP_SMTP_CA_FILE), credentials
come from the environment."""

from __future__ import annotations

import datetime as dt
import ipaddress
import ssl

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from channels.email import EmailChannel
from tests.channels.conftest import SmtpSink, free_port
from tests.channels.test_adapters import prepared


def _certificate(tmp_path):
    """A CA and a server certificate for 127.0.0.1 signed by it; returns (ca.pem, cert, key)."""
    now = dt.datetime.now(dt.UTC)

    def build(subject, issuer, key, signer, ca: bool, san=None):
        b = (
            x509.CertificateBuilder().subject_name(subject).issuer_name(issuer)
            .public_key(key.public_key()).serial_number(x509.random_serial_number())
            .not_valid_before(now - dt.timedelta(minutes=5))
            .not_valid_after(now + dt.timedelta(days=1))
            .add_extension(x509.BasicConstraints(ca=ca, path_length=None), critical=True)
        )  # fmt: skip
        if san:
            b = b.add_extension(x509.SubjectAlternativeName(san), critical=False)
        return b.sign(signer, hashes.SHA256())

    ca_key, key = ec.generate_private_key(ec.SECP256R1()), ec.generate_private_key(ec.SECP256R1())
    ca_name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "CEAP test CA")])
    ca = build(ca_name, ca_name, ca_key, ca_key, True)
    cert = build(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "127.0.0.1")]), ca_name,
                 key, ca_key, False, [x509.IPAddress(ipaddress.ip_address("127.0.0.1"))])  # fmt: skip
    paths = tmp_path / "ca.pem", tmp_path / "server.pem", tmp_path / "server.key"
    paths[0].write_bytes(ca.public_bytes(serialization.Encoding.PEM))
    paths[1].write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    paths[2].write_bytes(key.private_bytes(serialization.Encoding.PEM,
                                           serialization.PrivateFormat.PKCS8,
                                           serialization.NoEncryption()))  # fmt: skip
    return paths


class Recorder(SmtpSink):
    """Also records, per message, whether the session was encrypted and who logged in."""

    def __init__(self) -> None:
        super().__init__()
        self.sessions: list[tuple[bool, bool]] = []

    async def handle_DATA(self, server, session, envelope):  # noqa: N802 - aiosmtpd's hook name
        self.sessions.append((session.ssl is not None, session.authenticated))
        return await super().handle_DATA(server, session, envelope)


@pytest.fixture
def tls_smtp(tmp_path, monkeypatch):
    from aiosmtpd.controller import Controller
    from aiosmtpd.smtp import AuthResult

    ca, cert, key = _certificate(tmp_path)
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.load_cert_chain(cert, key)

    def authenticator(server, session, envelope, mechanism, auth_data):
        ok = auth_data.login == b"ceap" and auth_data.password == b"s3cret"
        return AuthResult(success=ok, handled=False)  # handled=False: the server answers 535

    sink = Recorder()
    controller = Controller(
        sink, hostname="127.0.0.1", port=free_port(), tls_context=context,
        require_starttls=True, authenticator=authenticator, auth_required=True,
        auth_require_tls=True,
    )  # fmt: skip
    controller.start()
    for name, value in {"CEAP_SMTP_HOST": "127.0.0.1", "CEAP_SMTP_PORT": str(controller.port),
                        "CEAP_SMTP_STARTTLS": "1", "CEAP_SMTP_CA_FILE": str(ca),
                        "CEAP_SMTP_USER": "ceap", "CEAP_SMTP_PASSWORD": "s3cret"}.items():  # fmt: skip
        monkeypatch.setenv(name, value)
    yield sink
    controller.stop()


def test_mail_goes_out_encrypted_and_authenticated(tls_smtp):
    adapter = EmailChannel()
    results = adapter.send([prepared(adapter, key="a" * 64), prepared(adapter, key="b" * 64)],
                           commit=lambda m: True)  # fmt: skip
    adapter.close()
    assert [r.ok for r in results] == [True, True]
    assert tls_smtp.keys() == ["a" * 64, "b" * 64]
    assert tls_smtp.sessions == [(True, True), (True, True)]  # one TLS session, reused


def test_an_unverifiable_certificate_sends_nothing(tls_smtp, monkeypatch):
    monkeypatch.delenv("CEAP_SMTP_CA_FILE")  # the system's CAs do not know the test CA
    adapter = EmailChannel()
    (result,) = adapter.send([prepared(adapter)], commit=lambda m: True)
    adapter.close()
    assert not result.ok and "CERTIFICATE_VERIFY_FAILED" in result.error
    assert tls_smtp.messages == []


def test_wrong_credentials_send_nothing(tls_smtp, monkeypatch):
    monkeypatch.setenv("CEAP_SMTP_PASSWORD", "wrong")
    adapter = EmailChannel()
    (result,) = adapter.send([prepared(adapter)], commit=lambda m: True)
    adapter.close()
    assert not result.ok and "535" in result.error
    assert tls_smtp.messages == []
