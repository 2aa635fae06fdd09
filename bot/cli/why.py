"""``herald status ID --why``: a notification's lateness attributed to its causes, and its slowest
deliveries (the numbers come from :mod:`bot.engine.delays`)."""

from __future__ import annotations

from typing import Any

from bot.app import Herald
from bot.engine.delays import ranked, slowest
from bot.render import seconds_text, terminal_text

LABELS = {
    "queue": "queue (waiting for a dispatcher or a connection)",
    "throttle": "throttle (rate_per_second, back-pressure)",
    "quiet_hours": "quiet hours",
    "retry": "retries (failed attempts and backoff)",
    "provider": "provider (time to take the message)",
    "channel_down": "channel outage",
}


def slowest_deliveries(herald: Herald, status: dict[str, Any]) -> list[dict[str, Any]]:
    """The deliveries of the notification ``status`` describes that were handed over last."""
    with herald.store.begin() as connection:
        return slowest(connection, status)


def why_text(status: dict[str, Any], slow: list[dict[str, Any]]) -> str:
    """The attribution as lines of text: the basis, each cause (largest first), the slowest."""
    sla = status["sla"]
    over = sla["delays_over"]
    causes = ranked(sla["delays"])
    lines = [f"Why {status['id']} took as long as it did:"]
    if not over["deliveries"]:
        lines.append("  nothing was handed over yet")
    else:
        lines.append("  " + _basis(over, sum(seconds for _, seconds, _ in causes)))
    for cause, seconds, share in causes:
        lines.append(f"  {share * 100:5.1f}%  {seconds_text(seconds):>7}  {LABELS[cause]}")
    if slow:
        lines.append("Slowest deliveries (time from the start to the hand-over):")
    for item in slow:
        who = f"{item['name']} ({item['person']})" if item["name"] else item["person"]
        cause = LABELS[item["cause"]].split(" (")[0] if item["cause"] else "-"
        lines.append(f"  {who}  {item['channel']}  {seconds_text(item['total_s'])}, mostly {cause}")
    return "\n".join(terminal_text(line) for line in lines)


def _basis(over: dict[str, Any], total: float) -> str:
    count = over["deliveries"]
    plural = "delivery" if count == 1 else "deliveries"
    if over["basis"] == "late":
        return f"{count} {plural} handed over after the deadline took {seconds_text(total)} in all:"
    share = f"the slowest 1 % ({count} {plural})"
    return f"nothing was handed over late; {share} took {seconds_text(total)} in all:"
