"""Is more urgent work waiting than what a dispatcher is about to send?

A dispatcher starts the deliveries it claimed in deadline order, but a notice created after the claim
(a critical alert in the middle of a maintenance fan-out) is not among them: it would wait until the
whole batch has started, which lasts longer than planned when the dispatcher falls behind its pace.
While a batch is being started, :class:`~bot.engine.runner.ChannelRunner` asks :func:`waiting` a few
times a second; when the answer is yes it gives back the rest of the batch and claims again, earliest
deadline first. One indexed read (the claim's own partial index), on both databases, so it also sees
notices queued by another process on SQLite, where no ``NOTIFY`` wakes the dispatcher.
"""

from __future__ import annotations

from sqlalchemy import select

from bot.store import Store
from bot.tables import CLAIMABLE, Delivery, table_of

DELIVERY = table_of(Delivery)

CHECK_EVERY = 0.2  # seconds between looks while a batch is being started


def waiting(store: Store, channel: str, now: float, deadline: float) -> bool:
    """Whether a delivery of ``channel`` due by ``now`` with a deadline before ``deadline`` waits."""
    query = (
        select(DELIVERY.c.id)
        .where(
            DELIVERY.c.state.in_(CLAIMABLE),
            DELIVERY.c.deadline < deadline,
            DELIVERY.c.channel == channel,
            DELIVERY.c.due_at <= now,
        )
        .order_by(DELIVERY.c.deadline, DELIVERY.c.id)
        .limit(1)
    )
    with store.one_statement() as connection:
        return connection.execute(query).first() is not None
