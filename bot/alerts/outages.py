"""Telling operators in ``slack.alert_channel`` that a delivery channel is down, and when it is back.

The dispatcher's breaker (:mod:`bot.engine.health`) calls the notifier once per outage, from the one
process that opened (or closed) it. Slack being off or unreachable never stops delivery.
"""

from __future__ import annotations

from bot.app import Herald
from bot.engine.health import PROBE_MAX, Outage, OutageNotifier
from bot.slack.blocks import escape


def outage_text(outage: Outage, down: bool, now: float) -> str:
    """The alert channel's line for an outage that began (``down``) or ended ``now``."""
    if down:
        return (
            f":red_circle: *The {outage.channel} channel is down* ({escape(outage.reason)}: "
            f"{escape(outage.detail)}). Herald holds its deliveries, never fails them, and tries again "
            f"at most {PROBE_MAX:.0f}s apart; fix the provider settings or wait for the provider."
        )
    minutes = max(0.0, now - outage.since) / 60
    return (
        f":large_green_circle: *The {outage.channel} channel answers again* after {minutes:.0f} min; "
        "the held deliveries are going out, earliest deadline first."
    )


def outage_notifier(herald: Herald) -> OutageNotifier | None:
    """A notifier posting to ``slack.alert_channel``; None when Slack or the alert channel is off."""
    if herald.settings.slack.bot_token is None:
        return None  # as AlertSlack.build says, without loading the Slack SDK into every command
    from bot.alerts.slack import AlertSlack

    slack = AlertSlack.build(herald)
    if slack is None:
        return None

    async def notify(outage: Outage, down: bool) -> None:
        text = outage_text(outage, down, herald.clock.now())
        await slack.client.chat_postMessage(channel=slack.channel, text=text)

    return notify
