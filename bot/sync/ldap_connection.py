"""Talking to an LDAP or Active Directory server with ldap3: connecting, binding, paged searches.

:func:`connect` opens a read-only connection (``ldaps://``, or ``ldap://`` with StartTLS when
``start_tls`` is set; certificates are verified against the system's CAs, ``SSL_CERT_FILE`` names
another bundle) and binds (simple bind as ``bind_dn``, anonymous without one). :class:`PagedSearch`
reads subtree searches in pages of ``page_size`` (Active Directory answers at most 1,000 entries per
page); every search must end in success: one the server stops early (a size or time limit) raises,
as does a connection that drops between pages. :func:`close` always releases the socket.

Errors: :class:`~bot.sync.errors.SyncError` only (reasons ``config``, ``auth``, ``network``,
``source``); its message names the server and never a password.
"""

from __future__ import annotations

import contextlib
import re
import ssl
import warnings
from collections.abc import Iterator, Mapping
from typing import Any

with warnings.catch_warnings():
    # ldap3 2.9.1 imports names pyasn1 >= 0.6.2 marks deprecated; the warning is about ldap3's code.
    warnings.simplefilter("ignore", DeprecationWarning)
    from ldap3 import ANONYMOUS, NONE, SIMPLE, SUBTREE, Connection, Server, Tls
    from ldap3.core.exceptions import (
        LDAPBindError,
        LDAPCertificateError,
        LDAPCommunicationError,
        LDAPException,
        LDAPInvalidCredentialsResult,
        LDAPInvalidFilterError,
        LDAPOperationResult,
        LDAPStartTLSError,
    )

from bot.config import LdapSettings
from bot.sync.errors import SyncError

CONNECT_TIMEOUT = 10
RECEIVE_TIMEOUT = 60  # ldap3 needs an int (it packs it into SO_RCVTIMEO)
PAGED_RESULTS_OID = "1.2.840.113556.1.4.319"
_TUPLE_TEXT = re.compile(r"""\((['"])(.*)\1,\)""", re.DOTALL)

Attributes = Mapping[str, list[Any]]


def connect(settings: LdapSettings) -> Connection:
    """An open, bound, read-only connection; :class:`SyncError` when connecting or binding fails."""
    url = required_setting(settings.url, "url")
    scheme = url.split("://", 1)[0].lower() if "://" in url else ""
    if scheme not in ("ldap", "ldaps"):
        raise SyncError("directory.ldap.url: expected ldap://HOST[:PORT] or ldaps://HOST[:PORT]", "config")
    password = settings.bind_password.get_secret_value() if settings.bind_password else None
    if settings.bind_dn and not password:
        raise SyncError("directory.ldap.bind_password: missing (required with bind_dn)", "config")
    connection = _unopened(url, scheme == "ldaps", settings.bind_dn, password)
    try:
        connection.open()
        if settings.start_tls and scheme == "ldap":
            connection.start_tls()
        connection.bind()
    except (LDAPException, OSError) as exc:
        close(connection)
        raise _bind_failure(exc, url, settings.bind_dn) from exc
    return connection


def _unopened(url: str, use_ssl: bool, bind_dn: str | None, password: str | None) -> Connection:
    """The ldap3 connection object, not yet opened; a URL ldap3 refuses is a ``config`` error."""
    try:
        server = Server(
            url,
            use_ssl=use_ssl,
            tls=Tls(validate=ssl.CERT_REQUIRED),
            get_info=NONE,
            connect_timeout=CONNECT_TIMEOUT,
        )
        return Connection(
            server,
            user=bind_dn,
            password=password,
            authentication=SIMPLE if bind_dn else ANONYMOUS,
            read_only=True,
            raise_exceptions=True,
            auto_referrals=False,
            receive_timeout=RECEIVE_TIMEOUT,
        )
    except LDAPException as exc:
        raise SyncError(f"directory.ldap.url: {_first_line(exc)}", "config") from exc


def _bind_failure(exc: LDAPException | OSError, url: str, bind_dn: str | None) -> SyncError:
    """What a failure to open, secure or bind a connection means, as a :class:`SyncError`."""
    if isinstance(exc, LDAPInvalidCredentialsResult | LDAPBindError):
        who = f"as {bind_dn!r}" if bind_dn else "anonymously"
        return SyncError(f"{url}: bind {who} refused: {_reason(exc)}", "auth")
    if isinstance(exc, LDAPStartTLSError | LDAPCertificateError | ssl.SSLError):
        return SyncError(f"{url}: TLS failed: {_first_line(exc)}", "network")
    if isinstance(exc, LDAPCommunicationError | OSError):
        return SyncError(f"{url}: cannot connect: {_first_line(exc)}", "network")
    return SyncError(f"{url}: bind failed: {_reason(exc)}", "source")


class PagedSearch:
    """Paged subtree searches over one connection; counts requests; turns ldap3 errors into SyncError."""

    def __init__(self, connection: Connection, page_size: int, url: str) -> None:
        self.connection = connection
        self.page_size = page_size
        self.url = url
        self.requests = 0

    def entries(
        self, what: str, base: str, search_filter: str, attributes: list[str]
    ) -> Iterator[tuple[str, Attributes]]:
        """``(dn, attributes)`` of every entry, a page at a time; referrals are skipped."""
        cookie: bytes | None = None
        where = f"{self.url}: search of {what} under {base!r}"
        while True:
            result = self._page(where, base, search_filter, attributes, cookie)
            for item in self.connection.response or ():
                if item.get("type") == "searchResEntry":
                    yield item["dn"], item["attributes"]
            control = (result.get("controls") or {}).get(PAGED_RESULTS_OID) or {}
            cookie = (control.get("value") or {}).get("cookie") or None
            if not cookie:
                return

    def _page(
        self, where: str, base: str, search_filter: str, attributes: list[str], cookie: bytes | None
    ) -> dict[str, Any]:
        """Search for one page (entries land in ``connection.response``); the result, a success."""
        try:
            self.connection.search(
                base,
                search_filter,
                SUBTREE,
                attributes=attributes,
                paged_size=self.page_size,
                paged_cookie=cookie,
            )
        except LDAPInvalidFilterError as exc:
            raise SyncError(f"{where}: invalid filter {search_filter!r}: {exc}", "config") from exc
        except (LDAPCommunicationError, OSError) as exc:
            raise SyncError(f"{where}: connection lost: {_first_line(exc)}", "network") from exc
        except LDAPException as exc:
            raise SyncError(f"{where} failed: {_reason(exc)}", "source") from exc
        self.requests += 1
        result: dict[str, Any] = self.connection.result
        if result.get("result") != 0:
            # ldap3 does not raise for sizeLimitExceeded and timeLimitExceeded.
            raise SyncError(f"{where} stopped early: {result.get('description')}", "source")
        return result


def required_setting(value: str | None, key: str) -> str:
    """``directory.ldap.<key>``, stripped; a ``config`` :class:`SyncError` when it is not set."""
    if not value or not value.strip():
        raise SyncError(
            f"directory.ldap.{key} is not set (required with directory.source = 'ldap')", "config"
        )
    return value.strip()


def close(connection: Connection) -> None:
    """Unbind and close the socket, whatever state the connection is in; never raises."""
    with contextlib.suppress(LDAPException, OSError):
        connection.unbind()
    # ldap3 leaves the socket open when connecting fails or the connection dropped.
    sock = getattr(connection, "socket", None)
    if sock is not None:
        with contextlib.suppress(OSError):
            sock.close()


def _reason(exc: LDAPException | OSError) -> str:
    if isinstance(exc, LDAPOperationResult):
        message = (exc.message or "").strip()
        return f"{exc.description}" + (f" ({message})" if message else "")
    return _first_line(exc)


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    # ldap3 wraps messages in the repr of a one-element tuple, sometimes twice: ('...',)
    while match := _TUPLE_TEXT.fullmatch(text):
        text = match.group(2)
    return text.splitlines()[0] if text else type(exc).__name__
