"""Signed, unguessable per-person tokens for unsubscribe and preference links (``/u/{token}``).

A token is ``{person_id_b64}.{expiry}.{mac}``: HMAC-SHA256 over the person id and expiry with the
installation's key (``server.secret_key``, else a random key generated once and kept in the
database). Tokens expire after ``TOKEN_LIFETIME`` (links in old mail stop working after a year).
"""

from __future__ import annotations

import base64
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


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def _unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def make_token(key: bytes, person_id: str, now: float) -> str:
    expiry = int(now + TOKEN_LIFETIME)
    payload = f"{_b64(person_id.encode())}.{expiry}"
    mac = hmac.new(key, payload.encode(), hashlib.sha256).digest()[:18]
    return f"{payload}.{_b64(mac)}"


def read_token(key: bytes, token: str, now: float) -> str | None:
    """The person id a valid, unexpired token names; None for anything else."""
    try:
        encoded_id, expiry_text, mac_text = token.split(".")
        expiry = int(expiry_text)
        payload = f"{encoded_id}.{expiry_text}"
        expected = hmac.new(key, payload.encode(), hashlib.sha256).digest()[:18]
        if not hmac.compare_digest(expected, _unb64(mac_text)) or expiry < now:
            return None
        return _unb64(encoded_id).decode()
    except (ValueError, UnicodeDecodeError):
        return None
