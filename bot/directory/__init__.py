"""The company directory: people as rows (:mod:`~bot.directory.records`), stored and imported
(:mod:`~bot.directory.store`), and selected by audience queries (:mod:`~bot.directory.audience`).
Syncing from LDAP or Slack is :mod:`bot.sync`."""
