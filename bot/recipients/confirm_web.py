"""``/c/{token}``: the email's confirmation link (see :mod:`bot.recipients.confirmations`).

``GET`` shows a small page with a Confirm button and never confirms (mail scanners prefetch links);
only the ``POST`` the button sends records the confirmation. The page speaks the person's language
(the ``confirm_page_*`` phrases of :mod:`channels.phrases`). A token that is not valid, has expired,
or names no recipient of a confirm-asking notification gets a plain 404 page.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, replace
from datetime import UTC, datetime

import jinja2
from sqlalchemy import select
from starlette.requests import Request
from starlette.responses import HTMLResponse, Response

from bot.app import Herald
from bot.channel_specs import templates
from bot.recipients import confirmations, pages
from bot.recipients.tables import Confirmation
from bot.tables import Notification, table_of
from channels.phrases import Phrases

CONFIRMATION = table_of(Confirmation)
NOTIFICATION = table_of(Notification)


class ConfirmPage:
    """The ``/c/{token}`` handler (GET and POST)."""

    def __init__(self, herald: Herald, env: jinja2.Environment, headers: dict[str, str]) -> None:
        self.herald = herald
        self.env = env
        self.headers = headers
        self.templates = templates(herald.settings)

    async def handle(self, request: Request) -> Response:
        now = self.herald.clock.now()
        found = confirmations.read_confirm_token(self.herald.token_key(), request.path_params["token"], now)
        state = await asyncio.to_thread(self._state, found) if found else None
        if found is None or state is None:
            return HTMLResponse(
                pages.render_not_found(self.env).replace("preferences link", "link"),
                404,
                headers=self.headers,
            )
        if request.method == "POST" and state.confirmed_at is None:
            done = await asyncio.to_thread(confirmations.confirm, self.herald.store, *found, "email", now)
            state = replace(state, confirmed_at=done.at if done else None)
        return HTMLResponse(self._render(state), headers=self.headers)

    def _state(self, found: tuple[str, str]) -> _State | None:
        """The notification and the person's confirmation time and language; None when it asks none."""
        notification_id, person_id = found
        with self.herald.store.begin() as connection:
            row = connection.execute(
                select(NOTIFICATION.c.title, NOTIFICATION.c.meta).where(NOTIFICATION.c.id == notification_id)
            ).first()
            at = connection.execute(
                select(CONFIRMATION.c.at).where(
                    CONFIRMATION.c.notification_id == notification_id, CONFIRMATION.c.person_id == person_id
                )
            ).scalar_one_or_none()
        if row is None or not confirmations.asks_confirmation(row.meta):
            return None
        severity, language = confirmations.reader(self.herald.store, notification_id, person_id)
        return _State(str(row.title), severity, language, float(at) if at is not None else None)

    def _render(self, state: _State) -> str:
        """The page in the person's language: the ``confirm_page_*`` and ``confirm_button`` phrases."""
        when = (
            datetime.fromtimestamp(state.confirmed_at, UTC).strftime("%Y-%m-%d %H:%M UTC")
            if state.confirmed_at
            else ""
        )
        phrases = Phrases.of_kind(
            self.templates, state.severity, state.language, title=state.title, when=when
        )
        return self.env.get_template("confirm.html.j2").render(
            heading=phrases.get("confirm_page_heading"),
            title=state.title,
            confirmed=when,
            done=phrases.get("confirm_page_done"),
            prompt=phrases.get("confirm_page_prompt"),
            button=phrases.get("confirm_button"),
            lang=language_tag(state.language),
            footer=phrases.get("page_footer"),
        )


@dataclass(frozen=True, slots=True)
class _State:
    title: str
    severity: str
    language: str
    confirmed_at: float | None


def language_tag(language: str) -> str:
    """The page's ``lang``: the person's language when the built-ins have it, else ``en``."""
    base = language.lower().split("-")[0]
    return base if base in ("en", "de") else "en"
