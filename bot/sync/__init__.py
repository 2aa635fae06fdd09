"""Directory sync: people from LDAP / Active Directory or Slack into Herald's store.

``ldap_source`` and ``slack_source`` read a source whole and return rows or users (no database;
``ldap_source`` talks to the server through ``ldap_connection`` and compares DNs with ``ldap_dn``);
``runner`` validates them as a file import does and stores them in one transaction; ``schedule``
is what ``herald serve``'s scheduler runs every ``directory.sync_every``.

Errors: every failure to read a source is a :class:`~bot.sync.errors.SyncError` (nothing was
changed); see :mod:`bot.sync.errors`.
"""
