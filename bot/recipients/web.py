"""HTTP routes for recipients: the preferences page and Twilio's webhooks. They verify, parse, call one
function of :mod:`.preferences` or :mod:`.suppressions`, and render; nothing else.

- ``GET /u/{token}`` — the page (never changes anything: mail scanners prefetch links);
  ``POST /u/{token}`` — ``List-Unsubscribe=One-Click`` (RFC 8058, urlencoded or multipart) turns
  every non-mandatory kind off on email and answers 200 at once; any other POST saves the form.
  The signed token in the URL is the credential; an invalid or expired one gets a plain 404 page.
- ``GET/POST /c/{token}`` — the email's confirmation link (:mod:`.confirm_web`).
- ``POST /hooks/twilio/inbound`` — STOP/START/HELP/ACK, OK or 1 (confirm), answered with TwiML.
- ``POST /hooks/twilio/status`` — delivery receipts, answered 204.

Both Twilio routes check ``X-Twilio-Signature`` with twilio's ``RequestValidator`` over
``{server.public_url}{path}`` (plus the query string) and every posted parameter: 403 when it does
not match, 404 while ``twilio.auth_token`` is not set.
"""

from __future__ import annotations

import asyncio
import logging
from email import policy
from email.message import EmailMessage
from email.parser import BytesParser
from urllib.parse import parse_qsl
from xml.sax.saxutils import escape

from starlette.datastructures import ImmutableMultiDict
from starlette.requests import Request
from starlette.responses import HTMLResponse, PlainTextResponse, Response
from starlette.routing import BaseRoute, Route
from twilio.request_validator import (
    SIGNATURE_HEADER,
    SIGNATURE_SETTINGS_HEADER,
    RequestValidator,
    get_signature_algorithm,
)

from bot import service
from bot.alerts.acks import ack_by_phone
from bot.app import Herald
from bot.channel_specs import templates
from bot.recipients import confirmations, inbound, pages, preferences, suppressions
from bot.recipients.confirm_web import ConfirmPage
from bot.recipients.rules import delivery_rules
from bot.recipients.sms import Command, StatusReport, read_inbound
from bot.tokens import read_token
from channels.phrases import Phrases

log = logging.getLogger("herald.recipients")

MAX_BODY = 64 * 1024
NO_ALERT = "No open alert to acknowledge."
SAVED = "Your preferences are saved. They apply from the next message on."
PAGE_HEADERS = {
    "Cache-Control": "no-store",
    "Referrer-Policy": "no-referrer",
    "X-Robots-Tag": "noindex, nofollow",
    "X-Content-Type-Options": "nosniff",
    "Content-Security-Policy": "default-src 'none'; style-src 'unsafe-inline'; form-action 'self'; "
    "base-uri 'none'; frame-ancestors 'none'",
}
TWIML = "text/xml; charset=utf-8"
_SHORT = ("MessageSid", "SmsSid", "AccountSid", "MessagingServiceSid", "From", "To")
FIELD_LIMITS = {**dict.fromkeys(_SHORT, 64), "MessageStatus": 32, "SmsStatus": 32, "ErrorCode": 16}


class BodyTooLarge(Exception):
    """The request body is over :data:`MAX_BODY`."""


async def read_body(request: Request) -> bytes:
    """The body, refusing more than :data:`MAX_BODY` bytes (whatever Content-Length claims)."""
    chunks: list[bytes] = []
    size = 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > MAX_BODY:
            raise BodyTooLarge
        chunks.append(chunk)
    return b"".join(chunks)


def parse_form(content_type: str, body: bytes) -> list[tuple[str, str]]:
    """A form body, ``application/x-www-form-urlencoded`` or ``multipart/form-data`` (both allowed by
    RFC 8058 for the one-click POST), as (name, value) pairs. Files are not expected and are skipped."""
    if content_type.lower().startswith("multipart/form-data"):
        head = f"Content-Type: {content_type}\r\nMIME-Version: 1.0\r\n\r\n".encode("latin-1", "replace")
        message = BytesParser(policy=policy.HTTP).parsebytes(head + body)
        pairs: list[tuple[str, str]] = []
        if not isinstance(message, EmailMessage) or not message.is_multipart():
            return pairs
        for part in message.iter_parts():
            name = part.get_param("name", header="content-disposition")
            if not isinstance(name, str) or part.get_filename():
                continue
            payload = part.get_payload(decode=True)
            raw = payload if isinstance(payload, bytes) else b""
            value = raw.decode(part.get_content_charset() or "utf-8", "replace")
            pairs.append((name, value.removesuffix("\r\n")))
        return pairs
    return parse_qsl(body.decode("utf-8", "replace"), keep_blank_values=True)


def signature_ok(
    auth_token: str, url: str, params: list[tuple[str, str]], signature: str, settings: str
) -> bool:
    """Twilio's request signature over ``url`` and every posted parameter (HMAC-SHA1, or the algorithm
    the ``X-Twilio-Webhooks-Signature-Settings`` header names)."""
    if not signature:
        return False
    validator = RequestValidator(auth_token)
    return bool(
        validator.validate(url, ImmutableMultiDict(params), signature, get_signature_algorithm(settings))
    )


def twiml(message: str | None) -> Response:
    body = f"<Response><Message>{escape(message)}</Message></Response>" if message else "<Response/>"
    return Response('<?xml version="1.0" encoding="UTF-8"?>' + body, media_type=TWIML)


async def acknowledge(herald: Herald, phone: str, text: str) -> str:
    """``ACK …`` by SMS: :func:`bot.alerts.acks.ack_by_phone`'s reply, or :data:`NO_ALERT` when it
    has none (the text is not an ACK it reads)."""
    reply = await asyncio.to_thread(ack_by_phone, herald, phone, text)
    return reply or NO_ALERT


def recipient_routes(herald: Herald) -> list[BaseRoute]:
    """The routes to mount in ``herald serve`` (``build_web_app(..., routes=...)``)."""
    handlers = RecipientHandlers(herald)
    return [
        Route("/u/{token}", handlers.page, methods=["GET", "POST"]),
        Route("/c/{token}", ConfirmPage(herald, handlers.env, PAGE_HEADERS).handle, methods=["GET", "POST"]),
        Route("/hooks/twilio/inbound", handlers.inbound, methods=["POST"]),
        Route("/hooks/twilio/status", handlers.status, methods=["POST"]),
    ]


class RecipientHandlers:
    """The handlers of :func:`recipient_routes`, sharing what they read from ``herald`` once."""

    def __init__(self, herald: Herald) -> None:
        self.herald = herald
        self.rules = delivery_rules(herald.settings)
        self.channels = herald.configured_channels()
        self.env = pages.environment()
        self.public_url = herald.settings.server.public_url
        self.store = herald.store
        self.templates = templates(herald.settings)

    def html(self, body: str, status: int = 200) -> HTMLResponse:
        return HTMLResponse(body, status, headers=PAGE_HEADERS)

    def person_for(self, token: str) -> str | None:
        return read_token(self.herald.token_key(), token, self.herald.clock.now())

    async def page(self, request: Request) -> Response:
        """``/u/{token}``: the preferences page on GET; a POST unsubscribes or saves the form."""
        person_id = await asyncio.to_thread(self.person_for, request.path_params["token"])
        view = None
        if person_id is not None:
            view = await asyncio.to_thread(preferences.load, self.store, self.rules, self.channels, person_id)
        if person_id is None or view is None:
            return self.html(pages.render_not_found(self.env), 404)
        if request.method != "POST":
            return self.html(pages.render_preferences(self.env, view))
        return await self.page_post(request, person_id, view)

    async def page_post(
        self, request: Request, person_id: str, view: preferences.PreferencesView
    ) -> Response:
        """A POST to the page: ``List-Unsubscribe=One-Click``, else the form's choices saved."""
        try:
            form = parse_form(request.headers.get("content-type", ""), await read_body(request))
        except BodyTooLarge:
            problem = pages.render_problem(self.env, "Too much data", "The form sent was too large.")
            return self.html(problem, 413)
        now = self.herald.clock.now()
        if ("List-Unsubscribe", "One-Click") in form:
            await asyncio.to_thread(preferences.unsubscribe_email, self.store, self.rules, person_id, now)
            log.info("one-click unsubscribe from email: person %s", person_id)
            await self.audit(
                f"person:{person_id}", "preferences.unsubscribe", person_id, {"channel": "email"}
            )
            return self.html(pages.render_unsubscribed(self.env, view, str(request.url)))
        try:
            choices = preferences.parse_choices(form, view.kinds, view.channels)
        except ValueError as exc:
            return self.html(pages.render_preferences(self.env, view, errors=[str(exc)]), 400)
        store, rules, channels = self.store, self.rules, self.channels
        await asyncio.to_thread(preferences.save, store, rules, channels, person_id, choices, now)
        await self.audit(f"person:{person_id}", "preferences.save", person_id, _choices_detail(view, choices))
        saved = await asyncio.to_thread(preferences.load, store, rules, channels, person_id)
        return self.html(pages.render_preferences(self.env, saved or view, status=SAVED))

    async def audit(self, actor: str, action: str, subject: str, detail: dict[str, object]) -> None:
        """A person's own change, in the audit log (``herald audit``)."""
        await asyncio.to_thread(service.audit, self.herald, actor, action, subject, True, detail)

    async def twilio_params(self, request: Request) -> list[tuple[str, str]] | Response:
        """The posted parameters of a correctly signed Twilio request, else the response refusing it."""
        auth_token = self.herald.settings.twilio.auth_token
        if auth_token is None:
            return PlainTextResponse("sms is not configured (twilio.auth_token)\n", 404)
        try:
            params = parse_form("application/x-www-form-urlencoded", await read_body(request))
        except BodyTooLarge:
            return PlainTextResponse("request body too large\n", 413)
        url = self.public_url + request.url.path + (f"?{request.url.query}" if request.url.query else "")
        signed = signature_ok(
            auth_token.get_secret_value(),
            url,
            params,
            request.headers.get(SIGNATURE_HEADER, ""),
            request.headers.get(SIGNATURE_SETTINGS_HEADER, ""),
        )
        if not signed:
            return PlainTextResponse("bad or missing X-Twilio-Signature\n", 403)
        # Twilio never sends NUL, and PostgreSQL can neither store nor compare it as text.
        bad = next((key for key, value in params if "\x00" in key + value), None)
        if bad is not None:
            return PlainTextResponse(
                f"{bad.replace(chr(0), '?')[:64]}: NUL characters are not allowed\n", 400
            )
        long = next((key for key, value in params if len(value) > FIELD_LIMITS.get(key, len(value))), None)
        if long is not None:  # Twilio's sids are 34 characters, its numbers and error codes far shorter
            return PlainTextResponse(f"{long}: longer than {FIELD_LIMITS[long]} characters\n", 400)
        return params

    async def inbound(self, request: Request) -> Response:
        """``POST /hooks/twilio/inbound``: an SMS to Herald's number, answered with TwiML."""
        params = await self.twilio_params(request)
        if isinstance(params, Response):
            return params
        fields = dict(params)
        phone = fields.get("From", "").strip()
        text = fields.get("Body", "")
        if not phone:
            return twiml(None)
        sid = inbound.message_sid(fields)
        if sid:
            now = self.herald.clock.now()
            seen = await asyncio.to_thread(inbound.first_sight, self.store, sid, phone, now)
            if seen is not None:  # a replay of a message already acted on: the same answer, no action
                log.info("inbound sms %s from %s seen before: not acted on again", sid, phone)
                return twiml(seen.reply)
        reply = await self.answer(read_inbound(text), phone, text)
        if sid:
            await asyncio.to_thread(inbound.remember_reply, self.store, sid, reply)
        return twiml(reply)

    async def answer(self, command: Command, phone: str, text: str) -> str | None:
        """Act on an inbound command; the reply to text back, or None for none."""
        if command is Command.OPT_OUT:
            # Twilio answers STOP itself, and refuses any reply to a number that opted out.
            await asyncio.to_thread(suppressions.opt_out_sms, self.store, phone, self.herald.clock.now())
            log.info("sms opt-out by STOP from %s", phone)
            await self.audit(f"sms:{phone}", "sms.stop", phone, {"channel": "sms"})
            return None
        if command is Command.OPT_IN:
            await asyncio.to_thread(suppressions.opt_in_sms, self.store, phone)
            log.info("sms opt-in by START from %s", phone)
            await self.audit(f"sms:{phone}", "sms.start", phone, {"channel": "sms"})
            return None
        if command is Command.HELP:
            return self.herald.settings.twilio.help_text
        if command is Command.ACK:
            return await acknowledge(self.herald, phone, text.strip())
        if command is Command.CONFIRM:
            now = self.herald.clock.now()
            found = await asyncio.to_thread(confirmations.confirm_by_phone, self.store, phone, now)
            return await asyncio.to_thread(self.confirmed, found) if found is not None else None
        return None

    def confirmed(self, found: confirmations.Confirmed) -> str:
        """The answer to an ``OK`` that confirmed: the ``sms_confirmed`` phrase in the person's language."""
        severity, language = confirmations.reader(self.store, found.notification_id, found.person_id)
        return Phrases.of_kind(self.templates, severity, language).get("sms_confirmed")

    async def status(self, request: Request) -> Response:
        """``POST /hooks/twilio/status``: a delivery receipt, recorded; answered 204."""
        params = await self.twilio_params(request)
        if isinstance(params, Response):
            return params
        fields = dict(params)
        report = StatusReport(
            message_sid=fields.get("MessageSid") or fields.get("SmsSid") or "",
            status=(fields.get("MessageStatus") or fields.get("SmsStatus") or "").strip().lower(),
            to=fields.get("To", "").strip(),
            error_code=fields.get("ErrorCode", "").strip(),
        )
        await asyncio.to_thread(suppressions.record_status, self.store, report, self.herald.clock.now())
        return Response(status_code=204)


def _choices_detail(view: preferences.PreferencesView, choices: preferences.Choices) -> dict[str, object]:
    """What a saved form turned off (``kind:channel``) and the quiet-hours choice."""
    off = [f"{k}:{c}" for k in view.kinds for c in view.channels if (k, c) not in choices.enabled]
    quiet = choices.quiet
    return {"off": off, "quiet": quiet.mode if quiet.mode != "custom" else f"{quiet.start}-{quiet.end}"}
