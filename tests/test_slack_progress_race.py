"""The all-clear while the progress message's final edit waits out the edit interval: that edit must
not bring the Done button back (bot.slack.progress.ProgressTracker._keep_up reads the status again
after the wait). Signed Slack requests to ``HeraldServer`` on an injected clock that stands still
until the test moves it, so the interleaving is the same every run: the final edit is computed and
waiting, the Done button is pressed (the window ends, ``refresh_progress`` redraws the message without
the button), then the wait ends. Deliveries go out in a step the test takes (no dispatcher in the
server). Both databases."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path
from typing import Any

from conftest import dispatch_until
from slack_signing import ANNOUNCER, CHANNEL, Harness, block_action, running_herald
from test_maintenance_slack import TYPED, progress_ts, send_typed, window_of
from test_slack_flows import eventually

from bot import service
from bot.app import Herald

START = 1_767_225_600.0  # 2026-01-01T00:00:00Z, before the typed window (22:00-23:30 that day)
INTERVAL = 3.0  # the tracker's min_interval between edits (HeraldServer's progress_interval)
POLL = 1.0  # the tracker's poll_interval (build_slack's default)


class HeldClock:
    """Herald's clock here: time stands still until :meth:`advance_to`, and each ``sleep`` lasts
    until the clock reaches its end (:meth:`pending` lists those ends)."""

    def __init__(self, start: float = START) -> None:
        self._now = start
        self._sleepers: list[tuple[float, asyncio.Future[None]]] = []

    def now(self) -> float:
        return self._now

    async def sleep(self, seconds: float) -> None:
        wake = self._now + max(0.0, seconds)
        if wake <= self._now:
            await asyncio.sleep(0)
            return
        sleeper = (wake, asyncio.get_running_loop().create_future())
        self._sleepers.append(sleeper)
        try:
            await sleeper[1]
        finally:
            if sleeper in self._sleepers:  # cancelled (woken sleepers are gone already)
                self._sleepers.remove(sleeper)

    def pending(self) -> list[float]:
        return sorted(wake for wake, _ in self._sleepers)

    def advance_to(self, when: float) -> None:
        self._now = max(self._now, when)
        for sleeper in [s for s in self._sleepers if s[0] <= self._now]:
            self._sleepers.remove(sleeper)
            if not sleeper[1].done():
                sleeper[1].set_result(None)


def edits(h: Harness, ts: str) -> list[dict[str, Any]]:
    """The ``chat.update`` calls on the message ``ts``, in order."""
    return [call.args for call in h.slack.calls_to("chat.update") if call.args.get("ts") == ts]


def shown_final(herald: Herald, nid: str) -> bool:
    """The tracker has made its last edit (``slack_done`` in the meta, see bot.slack.progress)."""
    return bool(((service.status(herald, nid) or {}).get("meta") or {}).get("slack_done"))


def has_done_button(blocks: list[dict[str, Any]]) -> bool:
    return "announce_done" in json.dumps(blocks)


async def sleeping_until(clock: HeldClock, when: float) -> None:
    """Wait (real time) until the only sleeper on ``clock`` is the one ending at ``when``."""
    await eventually(lambda: bool(clock.pending()))
    assert clock.pending() == [when]


async def test_done_pressed_while_the_final_edit_waits_does_not_bring_the_button_back(
    db_url: str, tmp_path: Path
) -> None:
    clock = HeldClock()
    async with running_herald(db_url, tmp_path, progress_interval=INTERVAL, clock=clock, dispatch=False) as h:
        herald = h.server.herald
        # START: Send; the progress message is posted (nothing sent yet) and the tracker polls again
        # at START + POLL.
        nid = await send_typed(h, TYPED)
        await sleeping_until(clock, START + POLL)
        ts = progress_ts(h, nid)
        assert has_done_button(h.slack.messages[(CHANNEL, ts)].blocks)

        # Everything is delivered while the tracker sleeps: its next read is final.
        await dispatch_until(herald, lambda: len(h.smtp.messages) == 2 and len(h.twilio.messages) == 3)
        assert (service.status(herald, nid) or {}).get("left") == 0

        # START + POLL: the tracker reads the final state, Done button included (the window is open),
        # and waits out the rest of the interval since the post before the edit.
        clock.advance_to(START + POLL)
        await sleeping_until(clock, START + INTERVAL)
        assert edits(h, ts) == []

        # Meanwhile the Done button is pressed: the window ends and the message is redrawn without it.
        pressed = block_action(
            "announce_done", nid, ANNOUNCER, CHANNEL, h.response_url("done"), ephemeral=False, message_ts=ts
        )
        assert (await h.signed.interaction(pressed)).status_code == 200
        assert "window has ended" in (await h.responses("done"))[0]["text"]
        await eventually(lambda: len(edits(h, ts)) == 1)
        assert not has_done_button(edits(h, ts)[0]["blocks"])
        assert clock.pending() == [START + INTERVAL]  # the final edit is still waiting

        # The wait ends: the final edit shows the window's end, not what was read before the wait.
        clock.advance_to(START + INTERVAL)
        await eventually(lambda: shown_final(herald, nid))
        final = edits(h, ts)
        assert len(final) == 2 and "finished" in final[-1]["text"]
        assert not has_done_button(final[-1]["blocks"])
        assert not has_done_button(h.slack.messages[(CHANNEL, ts)].blocks)
        window = window_of(h, nid)
        assert window is not None and window["ended_early"] is not None
