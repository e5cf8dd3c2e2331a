"""Email done right (issue 17, item 2): real mail to a local SMTP server is a valid RFC 5322
multipart message with RFC 8058 one-click unsubscribe, signed click links and an open pixel,
and SES sends the same raw message through a configuration set."""

from __future__ import annotations

import re
from email import message_from_bytes, policy
from urllib.parse import parse_qs, urlsplit

import boto3

from ceap.tokens import Purpose, verify
from channels.dispatcher import dispatch
from channels.email import EmailChannel
from channels.messages import Message
from tests.channels.conftest import NOW, PROGRAM

PUBLIC = "https://engage.example.com"


def token_of(url: str, purpose: Purpose) -> tuple[str, str | None]:
    prefix = f"{PUBLIC}/{purpose.value}/"
    assert url.startswith(prefix), url
    return verify(purpose, url.removeprefix(prefix).removesuffix(".gif"))


def test_mail_is_multipart_with_unsubscribe_click_links_and_pixel(world, smtp, monkeypatch):
    monkeypatch.setenv("CEAP_PUBLIC_URL", PUBLIC)
    monkeypatch.setenv("CEAP_SIGNING_KEY", "s" * 32)
    keys = world.seed(3)
    dispatch(world.store_spec, world.config_dir, now=NOW)
    assert sorted(smtp.keys()) == sorted(keys)
    for mail in smtp.messages:
        key = str(mail["X-CEAP-Idempotency-Key"]).strip()
        assert not mail.defects and mail["Date"]
        assert str(mail["Message-ID"]).strip() == f"<{key}@ceap>"
        assert mail.get_content_type() == "multipart/alternative"
        # RFC 8058: an HTTPS URI in List-Unsubscribe, and the one-click POST marker
        unsubscribe = re.fullmatch(r"<(.+)>", str(mail["List-Unsubscribe"])).group(1)
        assert str(mail["List-Unsubscribe-Post"]) == "List-Unsubscribe=One-Click"
        assert token_of(unsubscribe, Purpose.UNSUBSCRIBE) == (key, None)
        text = mail.get_body(("plain",)).get_content()
        page = mail.get_body(("html",)).get_content()
        assert unsubscribe in text and unsubscribe.replace("&", "&amp;") in page
        clicks = [u for u in re.findall(r"https?://\S+", text) if "/c/" in u]
        assert clicks and all("example.com/review/" not in u for u in re.findall(r"\S+", text))
        for url in clicks + re.findall(r'href="([^"]+/c/[^"]+)"', page):
            row, target = token_of(url, Purpose.CLICK)
            query = parse_qs(urlsplit(target).query)
            assert row == key and target.startswith("https://example.com/review/P")
            assert query["utm_source"] == ["ceap"] and query["ceap_key"] == [key]
        pixel = re.search(r'<img src="([^"]+)" width="1" height="1"', page).group(1)
        assert token_of(pixel, Purpose.OPEN) == (key, None)


def test_a_text_only_template_sends_a_text_only_mail(world, smtp):
    templates = world.config_dir / "templates"
    templates.mkdir()
    (templates / "plain.email.j2").write_text("Subject: Hi\nSee https://shop.example/x\n")
    world.write_program(extra="")
    text = (world.config_dir / "reviews.yaml").read_text()
    (world.config_dir / "reviews.yaml").write_text(
        text.replace("  - type: email\n", "  - type: email\n    template: plain\n")
    )
    world.seed(1)
    dispatch(world.store_spec, world.config_dir, now=NOW)
    (mail,) = smtp.messages
    assert mail.get_content_type() == "text/plain"  # never another template's HTML
    assert mail["List-Unsubscribe"] and "/u/" in mail.get_content()


def test_ses_sends_the_raw_message_through_its_configuration_set(moto_endpoint):
    ses = boto3.client("ses", endpoint_url=moto_endpoint, region_name="us-east-1")
    ses.verify_email_identity(EmailAddress="ceap@example.com")
    adapter = EmailChannel({
        "provider": "ses", "sender": "ceap@example.com", "configuration_set": "ceap-events",
        "region": "us-east-1", "endpoint_url": moto_endpoint,
    })  # fmt: skip
    message = Message(
        key="k1", program="reviews", customer_id="C1", subject_id="P1", channel="email",
        action="review", subject_type="product", template=None, context={}, recipient={},
        send_after="2024-03-01T12:00:00Z", address="c1@example.com",
    )  # fmt: skip
    adapter.render(message)
    calls = []
    adapter._ses = boto3.client("ses", endpoint_url=moto_endpoint, region_name="us-east-1")
    adapter._ses.meta.events.register(
        "provide-client-params.ses.SendRawEmail", lambda params, **_: calls.append(dict(params))
    )
    (result,) = adapter.send([message])
    assert result.ok and result.provider_id
    (call,) = calls
    assert call["ConfigurationSetName"] == "ceap-events"
    assert {"Name": "ceap_key", "Value": "k1"} in call["Tags"]
    mail = message_from_bytes(call["RawMessage"]["Data"], policy=policy.default)
    assert mail["List-Unsubscribe-Post"] == "List-Unsubscribe=One-Click"
    assert mail.get_body(("html",)) is not None


def test_program_still_loads_with_builtin_html_twins(world):
    assert "type: email" in PROGRAM  # the built-in review email has its HTML twin
    from channels.rendering import BUILTIN

    texts = {p.name.removesuffix(".j2") for p in BUILTIN.glob("*.j2") if ".html." not in p.name}
    twins = {p.name.removesuffix(".html.j2") for p in BUILTIN.glob("*.html.j2")}
    assert texts == twins
