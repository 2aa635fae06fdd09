"""VERP return paths: ``local+<token>@domain``, where the token names one delivery and is signed.

A token is ``<delivery id in base 36>-<MAC>``: the MAC is the first 8 bytes of HMAC-SHA256 over the id
with a key derived from the installation's secret, in lower-case base 32 (13 characters), so a token
survives relays that fold the case of local parts and a forged or altered one names no delivery.
``bounces+1a2b-7rdoq3pbq4zyk@example.com`` is a typical envelope sender: short enough for every MTA.

:class:`Verp` is built once per channel; :meth:`Verp.address` costs one HMAC over a few bytes (the
keyed state is made once and copied), so it is cheap on the per-recipient path.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import re

_MAC_BYTES = 8
_MAC_CHARS = 13  # base 32 of 8 bytes, unpadded
_TOKEN = re.compile(rf"([0-9a-z]{{1,13}})-([a-z2-7]{{{_MAC_CHARS}}})")
_DIGITS = "0123456789abcdefghijklmnopqrstuvwxyz"


def derive_key(secret: str) -> bytes:
    """The VERP key for ``secret`` (``server.secret_key``): apart from every other use of that secret."""
    return hmac.new(secret.encode(), b"herald verp v1", hashlib.sha256).digest()


def _base36(number: int) -> str:
    digits = []
    while True:
        number, digit = divmod(number, 36)
        digits.append(_DIGITS[digit])
        if not number:
            return "".join(reversed(digits))


class Verp:
    """Signs and reads the tokens of one return path (``bounces@example.com``)."""

    def __init__(self, return_path: str, key: bytes) -> None:
        local, at, domain = return_path.strip().rpartition("@")
        if not at or not local or not domain or "+" in local:
            raise ValueError("expected local@domain without '+' in the local part")
        self.local, self.domain = local, domain
        self._keyed = hmac.new(key, digestmod=hashlib.sha256)

    def _mac(self, encoded_id: str) -> str:
        mac = self._keyed.copy()
        mac.update(encoded_id.encode("ascii"))
        return base64.b32encode(mac.digest()[:_MAC_BYTES]).decode("ascii").rstrip("=").lower()

    def token(self, delivery_id: int) -> str:
        encoded = _base36(delivery_id)
        return f"{encoded}-{self._mac(encoded)}"

    def address(self, delivery_id: int) -> str:
        """The envelope sender for ``delivery_id``."""
        return f"{self.local}+{self.token(delivery_id)}@{self.domain}"

    def read(self, text: str) -> int | None:
        """The delivery id a token, or a VERP address, names when its MAC is right; else None."""
        text = text.strip().strip("<>").lower()
        if "@" in text:
            local = text.rpartition("@")[0]
            prefix, plus, text = local.partition("+")
            if not plus or prefix != self.local.lower():
                return None
        match = _TOKEN.fullmatch(text)
        if match is None:
            return None
        encoded, mac = match.groups()
        if not hmac.compare_digest(mac, self._mac(encoded)):
            return None
        return int(encoded, 36)
