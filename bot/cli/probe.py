"""``herald config check --probe``: connect to every configured provider and say which answer.

One probe per provider, in this order, each a function returning what it reached (or raising
:class:`ProbeFailed` with the reason):

- ``database`` (always): connect and ``SELECT 1``; the schema is left as it is.
- ``smtp`` (always: email is always on): connect, TLS per ``smtp.security``, AUTH when
  ``smtp.username`` is set, QUIT. Nothing is sent.
- ``twilio`` (when ``twilio.account_sid`` and ``auth_token`` are set): fetch the account,
  ``GET {api_url}/2010-04-01/Accounts/{sid}.json``, through the official client.
- ``slack`` (when ``slack.bot_token`` is set): ``auth.test``.
- ``ldap`` (when ``[directory] source = "ldap"``): connect and bind as Herald's sync does.
- ``imap`` (when ``[bounces] imap_url`` is set): log in to the bounce mailbox, select its folder.

A line never holds a secret: every configured secret (and the database password) is masked in it
whatever a server or library said. When the database answers, the run is audited (action
``config.probe``).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass
from urllib.parse import urlsplit

import aiosmtplib
from pydantic import BaseModel, SecretStr
from slack_sdk.errors import SlackApiError
from sqlalchemy import text
from sqlalchemy.engine import make_url
from sqlalchemy.exc import ArgumentError, SQLAlchemyError

from bot import runtime
from bot.app import Herald
from bot.channel_specs import email_settings, sms_settings
from bot.config import Settings
from bot.store import StoreError, database_reason, open_store, safe_url

ACTION = "config.probe"
SLACK_TIMEOUT = 10


class ProbeFailed(Exception):
    """A provider did not answer as it should; the message (one line) says how."""


@dataclass(frozen=True)
class Probe:
    provider: str
    ok: bool
    detail: str  # what was reached, or why not

    def line(self) -> str:
        return f"ok  {self.provider} {self.detail}" if self.ok else f"FAIL {self.provider}: {self.detail}"


def probe_all(settings: Settings) -> list[Probe]:
    """Probe every configured provider (see the module docstring), secrets masked."""
    checks: list[tuple[str, Callable[[Settings], str]]] = [("database", _database), ("smtp", _smtp)]
    if sms_settings(settings) is not None:
        checks.append(("twilio", _twilio))
    if settings.slack.bot_token is not None:
        checks.append(("slack", _slack))
    if settings.directory.source == "ldap":
        checks.append(("ldap", _ldap))
    if settings.bounces.imap_url:
        checks.append(("imap", _imap))
    secrets = sorted(set(_secrets(settings)), key=len, reverse=True)
    return [_run(name, check, settings, secrets) for name, check in checks]


def _run(name: str, check: Callable[[Settings], str], settings: Settings, secrets: list[str]) -> Probe:
    try:
        detail, ok = check(settings), True
    except ProbeFailed as exc:
        detail, ok = str(exc), False
    for secret in secrets:
        detail = detail.replace(secret, "***")
    return Probe(name, ok, " ".join(detail.split()))


def _secrets(settings: BaseModel) -> Iterator[str]:
    """Every secret value in the settings, and the database URL's password."""
    for name in type(settings).model_fields:
        value = getattr(settings, name)
        if isinstance(value, SecretStr):
            yield value.get_secret_value()
        elif isinstance(value, BaseModel):
            yield from _secrets(value)
    if isinstance(settings, Settings):
        try:
            password = make_url(settings.database.url).password
        except ArgumentError:
            password = None
        if password:
            yield str(password)


def audit(settings: Settings, probes: list[Probe]) -> str | None:
    """Record the run in the audit log; None, or why it could not be recorded."""
    from bot.service import audit as write_audit

    failed = [probe.provider for probe in probes if not probe.ok]
    detail = {"failed": failed, "results": {probe.provider: probe.line() for probe in probes}}
    try:
        store = open_store(settings.database.url, migrate=False)
    except StoreError as exc:
        return str(exc)
    try:
        herald = Herald.build(settings, store=store)
        write_audit(herald, "cli", ACTION, ",".join(p.provider for p in probes), True, detail)
    except SQLAlchemyError as exc:
        return f"database {safe_url(settings.database.url)}: {database_reason(exc)}"
    finally:
        store.dispose()
    return None


# --- the probes ------------------------------------------------------------------------------


def _database(settings: Settings) -> str:
    url = settings.database.url
    try:
        store = open_store(url, migrate=False)
    except StoreError as exc:
        raise ProbeFailed(str(exc)) from exc
    try:
        with store.engine.connect() as connection:
            connection.execute(text("SELECT 1"))
    except SQLAlchemyError as exc:
        raise ProbeFailed(f"database {safe_url(url)}: {database_reason(exc)}") from exc
    finally:
        store.dispose()
    return safe_url(url)


def _smtp(settings: Settings) -> str:
    smtp = settings.smtp  # a username without a password is a configuration error already
    email = email_settings(settings)
    where = f"{email.host}:{email.effective_port}"
    try:
        runtime.run(_smtp_session(settings))
    except aiosmtplib.SMTPResponseException as exc:
        raise ProbeFailed(f"{where}: {exc.code} {exc.message}") from exc
    except (aiosmtplib.SMTPException, OSError) as exc:
        raise ProbeFailed(f"{where}: {exc or type(exc).__name__}") from exc
    shown = {"none": "no tls", "starttls": "starttls", "tls": "tls"}[smtp.security]
    return f"{where} ({shown}{', auth' if smtp.username else ''})"


async def _smtp_session(settings: Settings) -> None:
    """Connect (TLS or STARTTLS per settings), AUTH when a username is set, QUIT."""
    email = email_settings(settings)
    client = aiosmtplib.SMTP(
        hostname=email.host,
        port=email.effective_port,
        local_hostname=email.local_hostname,
        timeout=email.timeout,
        use_tls=email.security == "tls",
        start_tls=email.security == "starttls",
    )
    await client.connect()
    try:
        if email.username and email.password is not None:
            await client.login(email.username, email.password)
        await client.quit()
    finally:
        client.close()


def _twilio(settings: Settings) -> str:
    from twilio.base.exceptions import TwilioException, TwilioRestException
    from twilio.http.http_client import TwilioHttpClient
    from twilio.rest import Client

    sms = sms_settings(settings)
    assert sms is not None  # probe_all probes twilio only when it is configured
    client = Client(sms.account_sid, sms.auth_token, http_client=TwilioHttpClient(timeout=sms.timeout))
    client.api.base_url = sms.api_url.rstrip("/")
    client.edge = client.region = None  # api_url is the whole endpoint, as in channels/sms.py
    try:
        account = client.api.v2010.accounts(sms.account_sid).fetch()
    except TwilioRestException as exc:
        reason = str(exc.msg).removeprefix("Unable to fetch record: ")
        raise ProbeFailed(f"{exc.code or exc.status} {reason}") from exc
    except (TwilioException, OSError) as exc:  # requests' errors are OSErrors
        raise ProbeFailed(f"{urlsplit(sms.api_url).netloc}: {exc}") from exc
    return f"{urlsplit(sms.api_url).netloc} account {account.sid} ({account.status})"


def _slack(settings: Settings) -> str:
    import aiohttp

    from bot.slack.client import web_client

    async def auth_test() -> dict[str, object]:
        client = web_client(settings.slack)
        client.timeout = SLACK_TIMEOUT
        response = await client.auth_test()
        return dict(response.data) if isinstance(response.data, dict) else {}

    host = urlsplit(settings.slack.api_url).netloc
    try:
        answer = runtime.run(auth_test())
    except SlackApiError as exc:
        raise ProbeFailed(f"{host}: {exc.response.get('error', exc.response.status_code)}") from exc
    except (aiohttp.ClientError, OSError) as exc:
        raise ProbeFailed(f"{host}: {exc or type(exc).__name__}") from exc
    return f"{host} (team {answer.get('team')}, user {answer.get('user')})"


def _ldap(settings: Settings) -> str:
    from bot.sync.errors import SyncError
    from bot.sync.ldap_connection import close, connect

    ldap = settings.directory.ldap
    try:
        close(connect(ldap))
    except SyncError as exc:
        raise ProbeFailed(str(exc)) from exc
    return f"{ldap.url} ({f'bind as {ldap.bind_dn}' if ldap.bind_dn else 'anonymous bind'})"


def _imap(settings: Settings) -> str:
    from bot.recipients.bounce_imap import UNREACHABLE, connect, is_loopback, where

    bounces = settings.bounces
    host, port, secure = where(bounces)
    try:
        imap = connect(bounces, timeout=SLACK_TIMEOUT)
        try:
            count = imap.select_folder(bounces.folder, readonly=True).get(b"EXISTS", 0)
        finally:
            imap.logout()
    except UNREACHABLE as exc:
        raise ProbeFailed(f"{host}:{port}: {exc or type(exc).__name__}") from exc
    shown = "tls" if secure else "no tls" if is_loopback(host) else "starttls"
    return f"{host}:{port} ({shown}, login as {bounces.username}, {bounces.folder}: {count} messages)"
