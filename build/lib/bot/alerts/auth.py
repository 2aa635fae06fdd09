"""Webhook authentication: a bearer token or an HMAC-SHA256 signature, compared in constant time.

``[webhooks.<source>]`` configures each source (``alertmanager``, ``grafana``, ``alerts``):

- ``token``: the request carries ``Authorization: Bearer <token>`` (all Alertmanager's
  ``http_config`` can send: ``authorization: {credentials: <token>}``).
- ``hmac_secret``: the request carries ``signature_header`` (default ``X-Herald-Signature``) with the
  hex HMAC-SHA256 of the raw body, bare or as ``sha256=<hex>``. For Grafana, whose header is
  ``X-Grafana-Alerting-Signature``, that header is read too when the configured one is absent.
  (Grafana's optional timestamp header must be left empty: the signature is over the body alone.)

When both are set, either one passing is enough. A source with neither is refused: an open
webhook would let anyone page the on-call staff, so Herald never accepts alerts unauthenticated.
"""

from __future__ import annotations

import hashlib
import hmac
from collections.abc import Mapping

from bot.config import WebhookAuth

GRAFANA_HEADER = "X-Grafana-Alerting-Signature"


class WebhookAuthError(Exception):
    """The request is not authenticated; the message (never a secret) is for the sender."""


def _bearer(headers: Mapping[str, str]) -> str | None:
    value = headers.get("authorization", "").strip()
    scheme, _, credentials = value.partition(" ")
    if scheme.lower() != "bearer" or not credentials.strip():
        return None
    return credentials.strip()


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


def verify_webhook(auth: WebhookAuth | None, source: str, headers: Mapping[str, str], body: bytes) -> str:
    """Return how the request authenticated (``token`` or ``hmac``); raise :class:`WebhookAuthError`.

    ``headers`` must have lower-case names (Starlette's do).
    """
    if auth is None or (auth.token is None and auth.hmac_secret is None):
        raise WebhookAuthError(
            f"webhook auth is not configured for {source} (set webhooks.{source}.token or hmac_secret)"
        )
    if auth.token is not None:
        given = _bearer(headers)
        expected = auth.token.get_secret_value()
        if given is not None and hmac.compare_digest(given.encode(), expected.encode()):
            return "token"
    if auth.hmac_secret is not None:
        signature = _signature(headers, auth, source)
        expected = sign_body(auth.hmac_secret.get_secret_value(), body)
        if signature is not None and hmac.compare_digest(signature.encode(), expected.encode()):
            return "hmac"
    if auth.hmac_secret is not None and auth.token is None:
        raise WebhookAuthError(f"missing or bad signature ({auth.signature_header})")
    if auth.token is not None and auth.hmac_secret is None:
        raise WebhookAuthError("missing or bad bearer token")
    raise WebhookAuthError(f"missing or bad bearer token or signature ({auth.signature_header})")
