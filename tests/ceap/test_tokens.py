"""Signed link tokens (issue 17, item 1): bound to a row, a purpose and a URL; expiring;
a development key under CEAP_HOME; production refuses to run without a configured key."""

from __future__ import annotations

import os
import stat
import subprocess
import sys
import time
import types
from pathlib import Path

import pytest

from ceap import tokens
from ceap.errors import ConfigError
from ceap.tokens import Purpose, TokenError, TokenExpired, link, sign, verify


@pytest.fixture(autouse=True)
def key(monkeypatch):
    monkeypatch.setenv("CEAP_SIGNING_KEY", "k" * 32)


def test_a_token_gives_back_its_row_and_url():
    assert verify(Purpose.UNSUBSCRIBE, sign(Purpose.UNSUBSCRIBE, "abc")) == ("abc", None)
    token = sign(Purpose.CLICK, "abc", "https://shop.example/p/1?x=1")
    assert verify(Purpose.CLICK, token) == ("abc", "https://shop.example/p/1?x=1")


def test_altered_foreign_or_misused_tokens_are_refused(monkeypatch):
    token = sign(Purpose.CLICK, "abc", "https://shop.example/")
    head, _, tail = token.rpartition(".")
    forged = head + "." + ("A" if tail[0] != "A" else "B") + tail[1:]
    for bad in (forged, token[:-2], "", "not-a-token", "x" * 5000):
        with pytest.raises(TokenError):
            verify(Purpose.CLICK, bad)
    with pytest.raises(TokenError):  # a click token is no unsubscribe token
        verify(Purpose.UNSUBSCRIBE, token)
    monkeypatch.setenv("CEAP_SIGNING_KEY", "another key, long enough")
    with pytest.raises(TokenError):  # signed by someone else
        verify(Purpose.CLICK, token)


def test_tokens_expire_after_their_purposes_lifetime(monkeypatch):
    token = sign(Purpose.OPEN, "abc")
    later = time.time() + tokens.LIFETIME[Purpose.OPEN].total_seconds() + 60
    monkeypatch.setattr("itsdangerous.timed.time", types.SimpleNamespace(time=lambda: later))
    with pytest.raises(TokenExpired):
        verify(Purpose.OPEN, token)
    assert verify(Purpose.UNSUBSCRIBE, sign(Purpose.UNSUBSCRIBE, "abc"))[0] == "abc"


def test_links_use_the_public_url(monkeypatch):
    monkeypatch.setenv("CEAP_PUBLIC_URL", "https://engage.example.com/")
    assert link(Purpose.UNSUBSCRIBE, "abc").startswith("https://engage.example.com/u/")
    pixel = link(Purpose.OPEN, "abc")
    assert pixel.endswith(".gif") and pixel.startswith("https://engage.example.com/o/")


def test_without_a_key_a_development_key_is_made_once_under_ceap_home(monkeypatch, tmp_path):
    monkeypatch.delenv("CEAP_SIGNING_KEY")
    monkeypatch.setenv("CEAP_HOME", str(tmp_path))
    token = sign(Purpose.UNSUBSCRIBE, "abc")
    path = tmp_path / "signing.key"
    assert stat.S_IMODE(path.stat().st_mode) == 0o600 and len(path.read_text()) >= 32
    tokens._dev_key.cache_clear()
    assert verify(Purpose.UNSUBSCRIBE, token) == ("abc", None)  # read back, not re-made
    tokens.require_signing_key("serving")  # fine outside production


def test_production_refuses_to_start_without_a_key_and_short_keys(monkeypatch):
    monkeypatch.setenv("CEAP_ENV", "production")
    tokens.require_signing_key("live sending")
    monkeypatch.delenv("CEAP_SIGNING_KEY")
    with pytest.raises(ConfigError, match="CEAP_SIGNING_KEY"):
        tokens.require_signing_key("live sending")
    monkeypatch.setenv("CEAP_SIGNING_KEY", "short")
    with pytest.raises(ConfigError, match="at least"):
        tokens.signing_key()


def test_dispatch_and_serve_refuse_production_without_a_key(tmp_path):
    root = Path(__file__).resolve().parents[2]
    env = {k: v for k, v in os.environ.items() if k != "CEAP_SIGNING_KEY"}
    env |= {"CEAP_ENV": "production", "CEAP_HOME": str(tmp_path), "PYTHONPATH": str(root)}
    for command in (["dispatch"], ["serve", "--port", "1"]):
        done = subprocess.run(
            [sys.executable, str(root / "run.py"), *command],
            env=env, capture_output=True, text=True, timeout=120,
        )  # fmt: skip
        assert done.returncode != 0 and "CEAP_SIGNING_KEY" in done.stderr, done.stderr
