"""Signed, unguessable per-person tokens for unsubscribe and preference links (``/u/{token}``).

A token is ``{person_id_b64}.{expiry}.{mac}``: HMAC-SHA256 over the person id and expiry with the
installation's key (``server.secret_key``, else a random key generated once and kept in the
database). Tokens expire after ``TOKEN_LIFETIME`` (links in old mail stop working after a year).
"""

from __future__ import annotations

import base64
import binascii
import functools
import hashlib
import hmac
import secrets
import threading

from sqlalchemy import select
from sqlalchemy.exc import IntegrityError

from bot.store import Store
from bot.tables import KeyValue, table_of

TOKEN_LIFETIME = 365 * 86400.0
_KEY_NAME = "token_signing_key"
_lock = threading.Lock()
_cache: dict[str, bytes] = {}


def signing_key(store: Store, configured: str | None) -> bytes:
    if configured:
        return configured.encode()
    cached = _cache.get(store.url)  # read once per link signed: no lock once the key is known
    if cached is not None:
        return cached
    with _lock:
        cached = _cache.get(store.url)
        if cached is not None:
            return cached
        table = table_of(KeyValue)
        with store.begin() as connection:
            value = connection.execute(select(table.c.value).where(table.c.key == _KEY_NAME)).scalar()
        if value is None:
            try:
                with store.begin() as connection:
                    connection.execute(table.insert().values(key=_KEY_NAME, value=secrets.token_hex(32)))
            except IntegrityError:
                pass  # another process made it first
            with store.begin() as connection:
                value = connection.execute(select(table.c.value).where(table.c.key == _KEY_NAME)).scalar_one()
        key = str(value).encode()
        _cache[store.url] = key
        return key


_URL_SAFE = bytes.maketrans(b"+/", b"-_")


def _b64(data: bytes) -> str:
    """URL-safe base64 without padding (``base64.urlsafe_b64encode`` less its Python wrapping)."""
    return binascii.b2a_base64(data, newline=False).translate(_URL_SAFE).rstrip(b"=").decode()


def _unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def make_token(key: bytes, person_id: str, now: float) -> str:
    expiry = int(now + TOKEN_LIFETIME)
    payload = f"{_b64(person_id.encode())}.{expiry}"
    mac = signer(key).mac(payload.encode())[:18]
    return f"{payload}.{_b64(mac)}"


class Signer:
    """HMAC-SHA256 under one key, keyed once: each MAC copies the keyed ``hmac`` object instead of
    setting the key up again (``hmac.new`` per call costs ~50 % more; a link is signed per message)."""

    def __init__(self, key: bytes) -> None:
        self._keyed = hmac.new(key, digestmod=hashlib.sha256)

    def mac(self, message: bytes) -> bytes:
        mac = self._keyed.copy()
        mac.update(message)
        return mac.digest()


@functools.lru_cache(maxsize=16)
def signer(key: bytes) -> Signer:
    """The :class:`Signer` of ``key`` (one per installation key, kept)."""
    return Signer(key)


def read_token(key: bytes, token: str, now: float) -> str | None:
    """The person id a valid, unexpired token names; None for anything else."""
    try:
        encoded_id, expiry_text, mac_text = token.split(".")
        expiry = int(expiry_text)
        payload = f"{encoded_id}.{expiry_text}"
        expected = signer(key).mac(payload.encode())[:18]
        if not hmac.compare_digest(expected, _unb64(mac_text)) or expiry < now:
            return None
        return _unb64(encoded_id).decode()
    except (ValueError, UnicodeDecodeError):
        return None
