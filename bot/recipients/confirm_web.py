"""``/c/{token}``: the email's confirmation link (see :mod:`bot.recipients.confirmations`).

``GET`` shows a small page with a Confirm button and never confirms (mail scanners prefetch links);
only the ``POST`` the button sends records the confirmation. A token that is not valid, has expired,
or names no recipient of a confirm-asking notification gets a plain 404 page.
"""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime

import jinja2
from sqlalchemy import select
from starlette.requests import Request
from starlette.responses import HTMLResponse, Response

from bot.app import Herald
from bot.recipients import confirmations, pages
from bot.recipients.tables import Confirmation
from bot.tables import Notification, table_of

CONFIRMATION = table_of(Confirmation)
NOTIFICATION = table_of(Notification)


class ConfirmPage:
    """The ``/c/{token}`` handler (GET and POST)."""

    def __init__(self, herald: Herald, env: jinja2.Environment, headers: dict[str, str]) -> None:
        self.herald = herald
        self.env = env
        self.headers = headers

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
        title, confirmed_at = state
        if request.method == "POST" and confirmed_at is None:
            done = await asyncio.to_thread(confirmations.confirm, self.herald.store, *found, "email", now)
            confirmed_at = done.at if done else None
        return HTMLResponse(self._render(title, confirmed_at), headers=self.headers)

    def _state(self, found: tuple[str, str]) -> tuple[str, float | None] | None:
        """The notification's title and the person's confirmation time; None when it asks none."""
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
        return str(row.title), (float(at) if at is not None else None)

    def _render(self, title: str, confirmed_at: float | None) -> str:
        when = (
            datetime.fromtimestamp(confirmed_at, UTC).strftime("%Y-%m-%d %H:%M UTC") if confirmed_at else ""
        )
        return self.env.get_template("confirm.html.j2").render(
            heading="Confirm receipt", title=title, confirmed=when
        )
