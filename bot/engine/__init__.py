"""The delivery engine: everything between a stored notification and a provider's answer.

- :mod:`~bot.engine.create` writes a notification and its deliveries (once per idempotency key);
  :mod:`~bot.engine.ledger` claims due deliveries under a lease and records outcomes in batches;
- :mod:`~bot.engine.dispatcher` runs one :class:`ChannelRunner` per channel (claim, pace, send, decide,
  record) and :mod:`~bot.engine.outcomes` decides what a send's result means;
- :mod:`~bot.engine.throttle`, :mod:`~bot.engine.shares` and :mod:`~bot.engine.caps` keep the rate, the
  connection count, the day's counter with the daily cap and the warm-up ramp for the whole cluster;
- :mod:`~bot.engine.workers`, :mod:`~bot.engine.leader` and :mod:`~bot.engine.listen` keep the cluster
  (heartbeats, the leading process, PostgreSQL ``NOTIFY`` wake-ups);
- :mod:`~bot.engine.forecast` predicts when a fan-out ends; :mod:`~bot.engine.retention` deletes old work.
"""
