"""Signed tokens: the kept keyed HMAC signs exactly as ``hmac.new`` does, and tokens keep their format."""

from __future__ import annotations

import base64
import hashlib
import hmac

import pytest

from bot.tokens import TOKEN_LIFETIME, Signer, make_token, read_token, signer

KEYS = [b"", b"k", b"x" * 63, b"x" * 64, b"x" * 65, bytes(range(256)) * 2, "schlüssel".encode()]


@pytest.mark.parametrize("key", KEYS)
@pytest.mark.parametrize("message", [b"", b"cDE.1796459876", b"m" * 200])
def test_signer_is_hmac_sha256(key: bytes, message: bytes) -> None:
    assert Signer(key).mac(message) == hmac.new(key, message, hashlib.sha256).digest()


def test_a_signer_signs_many_messages_alike() -> None:
    kept = signer(b"k" * 64)
    assert signer(b"k" * 64) is kept
    for message in (b"a", b"b", b"a"):
        assert kept.mac(message) == hmac.new(b"k" * 64, message, hashlib.sha256).digest()


def _documented(key: bytes, person_id: str, now: float) -> str:
    """``{person_id_b64}.{expiry}.{mac}`` written out with the standard library alone."""

    def b64(data: bytes) -> str:
        return base64.urlsafe_b64encode(data).rstrip(b"=").decode()

    payload = f"{b64(person_id.encode())}.{int(now + TOKEN_LIFETIME)}"
    return f"{payload}.{b64(hmac.new(key, payload.encode(), hashlib.sha256).digest()[:18])}"


@pytest.mark.parametrize("key", KEYS)
@pytest.mark.parametrize("person_id", ["p1", "", "ünïcode/+?~", "x" * 301])
def test_make_token_keeps_its_format_and_reads_back(key: bytes, person_id: str) -> None:
    now = 1_767_225_600.75
    token = make_token(key, person_id, now)
    assert token == _documented(key, person_id, now)
    assert read_token(key, token, now) == person_id
    assert read_token(key + b"!", token, now) is None
    assert read_token(key, token, now + TOKEN_LIFETIME + 1) is None
