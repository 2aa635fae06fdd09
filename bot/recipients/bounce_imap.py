"""The bounce mailbox: the leading ``herald serve`` reads new messages over IMAP every ``poll_every``.

:func:`connect` opens ``[bounces] imap_url`` with IMAPClient: ``imaps://`` is TLS from the first byte,
``imap://`` upgrades with STARTTLS unless the host is loopback (a local relay). :class:`BounceMailbox`
selects ``folder``, fetches each new message without marking it (``BODY.PEEK[]``), reads it
(:mod:`.bounce_mail`), acts on each report (:func:`.bounces.apply`), then flags it ``\\Seen`` and
remembers its UID with the folder's UIDVALIDITY (in ``key_value``), so a message is processed once:
the next poll asks only for higher UIDs. When UIDVALIDITY changes (the mailbox was rebuilt), the
unseen messages are read instead. A message that cannot be read is logged, flagged and skipped.

A mailbox that cannot be reached (refused, timed out, login refused) is logged once per outage, at
warning, and retried at the next poll; it never stops ``serve``. Its recovery is logged at info.
"""

from __future__ import annotations

import asyncio
import ipaddress
import json
import logging
import socket
import ssl
from collections import Counter
from typing import Any
from urllib.parse import urlsplit

from imapclient import IMAPClient
from imapclient.exceptions import IMAPClientError
from sqlalchemy import select
from sqlalchemy.dialects import postgresql, sqlite

from bot.app import Herald
from bot.config import BouncesSettings
from bot.recipients.bounce_mail import parse_message
from bot.recipients.bounces import apply
from bot.server import Job
from bot.store import Store
from bot.tables import KeyValue, table_of

log = logging.getLogger("herald.bounces.imap")

TIMEOUT = 30.0
BATCH = 50
SEEN = b"\\Seen"
UNREACHABLE = (OSError, IMAPClientError, ssl.SSLError, socket.timeout)


def is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def where(bounces: BouncesSettings) -> tuple[str, int, bool]:
    """(host, port, implicit TLS) of ``imap_url``."""
    url = urlsplit(bounces.imap_url or "")
    secure = url.scheme == "imaps"
    return url.hostname or "", url.port or (993 if secure else 143), secure


def connect(bounces: BouncesSettings, timeout: float = TIMEOUT) -> IMAPClient:
    """A logged-in client; raises one of :data:`UNREACHABLE` (never showing the password)."""
    host, port, secure = where(bounces)
    context = ssl.create_default_context()
    imap = IMAPClient(host, port=port, ssl=secure, ssl_context=context if secure else None, timeout=timeout)
    try:
        if not secure and not is_loopback(host):
            imap.starttls(context)
        password = bounces.password.get_secret_value() if bounces.password else ""
        imap.login(bounces.username or "", password)
    except BaseException:
        imap.shutdown()
        raise
    return imap


class BounceMailbox:
    """Polls the bounce mailbox; see the module docstring. ``down`` is True during an outage."""

    def __init__(self, herald: Herald) -> None:
        self.herald = herald
        self.bounces = herald.settings.bounces
        return_path = self.bounces.return_path or ""
        self.verp_local = return_path.rpartition("@")[0] or None
        self.down = False

    async def poll(self) -> None:
        """One poll, off the event loop (IMAPClient blocks)."""
        await asyncio.to_thread(self.poll_once)

    def poll_once(self) -> Counter[str]:
        """Read what is new; outcomes counted by kind (``bounce:suppressed``, ``autoreply``...)."""
        host, port, _ = where(self.bounces)
        try:
            imap = connect(self.bounces)
            try:
                counts = self._read(imap)
            finally:
                _logout(imap)
        except UNREACHABLE as exc:
            if not self.down:
                log.warning("bounce mailbox %s:%d unreachable: %s; retrying each poll", host, port, _say(exc))
            self.down = True
            return Counter()
        if self.down:
            log.info("bounce mailbox %s:%d reachable again", host, port)
        self.down = False
        return counts

    def _read(self, imap: IMAPClient) -> Counter[str]:
        folder = self.bounces.folder
        selected = imap.select_folder(folder)
        validity = int(selected.get(b"UIDVALIDITY", 0))
        last = _load(self.herald.store, folder, validity)
        criteria: list[Any] = ["UNSEEN"] if last is None else ["UID", f"{last + 1}:*"]
        uids = sorted(uid for uid in imap.search(criteria) if last is None or uid > last)
        counts: Counter[str] = Counter()
        for start in range(0, len(uids), BATCH):
            batch = uids[start : start + BATCH]
            fetched = imap.fetch(batch, ["BODY.PEEK[]"])
            for uid in batch:
                raw = fetched.get(uid, {}).get(b"BODY[]", b"")
                counts.update(self._handle(uid, raw))
                imap.add_flags([uid], [SEEN])
                _save(self.herald.store, folder, validity, uid)
        return counts

    def _handle(self, uid: int, raw: bytes) -> list[str]:
        try:
            parsed = parse_message(raw, self.verp_local)
            store, settings, now = self.herald.store, self.herald.settings, self.herald.clock.now()
            outcomes = [apply(store, settings, report, now).outcome for report in parsed.reports]
        except Exception:  # a malformed message must not block the mailbox
            log.exception("bounce mailbox: message uid %d could not be read; skipped", uid)
            return ["error"]
        log.info("bounce mailbox: uid %d is %s %s", uid, parsed.kind, ",".join(outcomes))
        return [f"{parsed.kind}:{o}" for o in outcomes] or [parsed.kind]


def bounce_jobs(herald: Herald) -> list[Job]:
    """The poll job for ``herald serve`` (the leader runs it), when ``imap_url`` is set."""
    if not herald.settings.bounces.imap_url:
        return []
    return [Job("bounce-mailbox", herald.settings.bounces.poll_every, BounceMailbox(herald).poll)]


def _say(exc: BaseException) -> str:
    return str(exc) or type(exc).__name__


def _logout(imap: IMAPClient) -> None:
    try:
        imap.logout()
    except UNREACHABLE:
        imap.shutdown()


def _key(folder: str) -> str:
    return f"bounces.imap:{folder}"[:64]


def _load(store: Store, folder: str, validity: int) -> int | None:
    """The last UID read in ``folder`` under ``validity``; None when never read or rebuilt since."""
    table = table_of(KeyValue)
    with store.begin() as connection:
        value = connection.execute(select(table.c.value).where(table.c.key == _key(folder))).scalar()
    state = json.loads(value) if value else {}
    return int(state["last_uid"]) if state.get("uidvalidity") == validity else None


def _save(store: Store, folder: str, validity: int, uid: int) -> None:
    table = table_of(KeyValue)
    value = json.dumps({"uidvalidity": validity, "last_uid": uid})
    insert = (sqlite.insert if store.is_sqlite else postgresql.insert)(table).values(
        key=_key(folder), value=value
    )
    with store.begin() as connection:
        connection.execute(insert.on_conflict_do_update(index_elements=["key"], set_={"value": value}))
