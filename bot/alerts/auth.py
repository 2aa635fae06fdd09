"""Webhook authentication: a bearer token or an HMAC-SHA256 signature, compared in constant time.

``[webhooks.<source>]`` configures each source (``alertmanager``, ``grafana``, ``alerts``):

- ``token``: the request carries ``Authorization: Bearer <token>`` (all Alertmanager's
  ``http_config`` can send: ``authorization: {credentials: <token>}``).
- ``hmac_secret``: the request carries ``signature_header`` (default ``X-Herald-Signature``) with the
  hex HMAC-SHA256 of the raw body, bare or as ``sha256=<hex>``. For Grafana, whose header is
  ``X-Grafana-Alerting-Signature``, that header is read too when the configured one is absent.
  (Grafana's optional timestamp header must be left empty: the signature is over the body alone.)

A token must come with its scheme (``Bearer``, any case): a bare ``Authorization: <token>`` is
refused. When both are set, either one passing is enough. A source with neither is refused: an open
webhook would let anyone page the on-call staff, so Herald never accepts alerts unauthenticated.
A secret that is set but empty counts as unset: nothing ever matches an empty expected value.
:func:`bearer_token` and :func:`secret_matches` guard ``GET /api/notifications/{id}`` too.
"""

from __future__ import annotations

import hashlib
import hmac
from collections.abc import Mapping

from pydantic import SecretStr

from bot.config import WebhookAuth

GRAFANA_HEADER = "X-Grafana-Alerting-Signature"


class WebhookAuthError(Exception):
    """The request is not authenticated; the message (never a secret) is for the sender."""


def bearer_token(headers: Mapping[str, str]) -> str | None:
    """The credentials of ``Authorization: Bearer <token>`` (scheme case-insensitive), else None.

    A bare ``Authorization: <token>``, or another scheme, is no bearer token. ``headers`` must have
    lower-case names (Starlette's do).
    """
    scheme, _, credentials = headers.get("authorization", "").strip().partition(" ")
    if scheme.lower() != "bearer" or not credentials.strip():
        return None
    return credentials.strip()


def configured(secret: SecretStr | None) -> str | None:
    """The secret's value, or None when it is unset or empty (an empty secret never authenticates)."""
    value = secret.get_secret_value() if secret is not None else ""
    return value if value.strip() else None


def secret_matches(given: str | None, secret: SecretStr | None) -> bool:
    """``given`` equals the configured, non-empty ``secret``, compared in constant time."""
    expected = configured(secret)
    if given is None or expected is None:
        return False
    return hmac.compare_digest(given.encode(), expected.encode())


def _signature(headers: Mapping[str, str], auth: WebhookAuth, source: str) -> str | None:
    names = [auth.signature_header.lower()]
    if source == "grafana":
        names.append(GRAFANA_HEADER.lower())
    for name in names:
        value = headers.get(name, "").strip()
        if value:
            return value.removeprefix("sha256=").strip().lower()
    return None


def sign_body(secret: str, body: bytes) -> str:
    """The hex HMAC-SHA256 of ``body`` (what a sender puts in the signature header)."""
    return hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()


def _hmac_matches(auth: WebhookAuth, source: str, headers: Mapping[str, str], body: bytes) -> bool:
    key = configured(auth.hmac_secret)
    signature = _signature(headers, auth, source)
    if key is None or signature is None:
        return False
    return hmac.compare_digest(signature.encode(), sign_body(key, body).encode())


def verify_headers(auth: WebhookAuth | None, source: str, headers: Mapping[str, str]) -> str | None:
    """What the headers alone settle, before the body is read: ``"token"`` when the bearer token
    matches, None when a signature is there to check against the body; else raise
    :class:`WebhookAuthError` (so an unauthenticated body is refused unread).
    """
    token = configured(auth.token) if auth else None
    key = configured(auth.hmac_secret) if auth else None
    if auth is None or (token is None and key is None):
        raise WebhookAuthError(
            f"webhook auth is not configured for {source} (set webhooks.{source}.token or hmac_secret)"
        )
    if secret_matches(bearer_token(headers), auth.token):
        return "token"
    if key is not None and _signature(headers, auth, source) is not None:
        return None
    raise WebhookAuthError(_refusal(auth, token is not None, key is not None))


def _refusal(auth: WebhookAuth, token: bool, key: bool) -> str:
    if not token:
        return f"missing or bad signature ({auth.signature_header})"
    if not key:
        return "missing or bad bearer token"
    return f"missing or bad bearer token or signature ({auth.signature_header})"


def verify_webhook(auth: WebhookAuth | None, source: str, headers: Mapping[str, str], body: bytes) -> str:
    """Return how the request authenticated (``token`` or ``hmac``); raise :class:`WebhookAuthError`.

    ``headers`` must have lower-case names (Starlette's do). A secret that is set but empty counts
    as unset (configuration refuses it too).
    """
    if verify_headers(auth, source, headers) == "token":
        return "token"
    assert auth is not None  # verify_headers refuses a missing section
    if _hmac_matches(auth, source, headers, body):
        return "hmac"
    raise WebhookAuthError(_refusal(auth, configured(auth.token) is not None, True))
