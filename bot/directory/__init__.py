"""The company directory: people as rows (:mod:`~bot.directory.records`, each field parsed by
:mod:`~bot.directory.fields`), read from files (:mod:`~bot.directory.files`), stored and imported
(:mod:`~bot.directory.store`), and selected by audience queries (:mod:`~bot.directory.audience`,
compiled to SQL by :mod:`~bot.directory.audience_sql`, counted by :mod:`~bot.directory.reach`).
Syncing from LDAP or Slack is :mod:`bot.sync`."""
