"""What the preview says about a channel ladder: each rung, how many it goes to at most, when it
starts (:func:`bot.engine.ladder.plan` with today's forecast), and for SMS the most it can cost
(:mod:`bot.engine.sms_cost`), which is also what SMS to everyone at once would cost.

At preview time nobody has confirmed yet, so a later rung's size is everyone reachable on its
channels: the start shown is the earliest it can come, the size and cost the most they can be.
"""

from __future__ import annotations

from dataclasses import dataclass

from bot import service
from bot.app import Herald
from bot.directory.audience import parse_audience
from bot.directory.audience_sql import audience_condition
from bot.engine.forecast import forecast
from bot.engine.ladder import RungPlan, plan
from bot.engine.rungs import with_confirm
from bot.engine.sms_cost import most_cost, numbers_by_country
from channels.base import Notice


@dataclass(frozen=True, slots=True)
class LadderPreview:
    rungs: list[RungPlan]
    deadline: float  # when the later rungs must have reached the people left
    start: float
    sms_cost: float | None = None  # the most the SMS rung can cost ([twilio.prices]); None: no SMS
    sms_segments: int = 0


def message_costs(herald: Herald, request: service.AnnounceRequest, confirm: bool) -> dict[str, int]:
    """Throttle units per copy on each channel of ``request`` (SMS segments, the confirm hint in)."""
    mandatory = herald.settings.is_mandatory(request.severity)
    notice = Notice("preview", request.severity, request.title, request.body, mandatory, confirm=confirm)
    return {name: herald.channel(name).prepare(notice).cost for name in request.channels}


def ladder_preview(
    herald: Herald, request: service.AnnounceRequest, preview: service.Preview
) -> LadderPreview | None:
    """The ladder of ``request`` as :func:`plan` schedules it now; None for a single rung."""
    if len(request.rungs) < 2:
        return None
    now = herald.clock.now()
    start = max(now, request.start_at or now)
    confirm = bool(with_confirm(herald.settings, request.severity, request.meta).get("confirm"))
    sla = herald.settings.sla_for(request.severity)
    within = sla.deliver_within
    deadline = start + ((sla.confirm_within or within) if confirm else within)
    costs = message_costs(herald, request, confirm)
    entries = []
    for rung in request.rungs:
        reach = {name: preview.channels[name].reachable for name in rung}
        loads = [service.channel_load(herald, n, reach[n], costs[n], deadline, now) for n in rung]
        entries.append((rung, max(reach.values(), default=0), forecast(loads, now, deadline).seconds))
    cost = sms_cost(herald, request, costs["sms"]) if "sms" in costs else None
    return LadderPreview(plan(entries, start, deadline, within), deadline, start, cost, costs.get("sms", 0))


def sms_cost(herald: Herald, request: service.AnnounceRequest, segments: int) -> float:
    """The most one message of ``segments`` to everyone in the audience with a number can cost."""
    people = audience_condition(parse_audience(request.audience), request.slack_groups)
    by_country = numbers_by_country(herald.store, people)
    return most_cost(herald.settings.twilio.prices, by_country, segments)
