"""The one error a sync raises: the source could not be read whole, so nothing was changed.

::

    SyncError                  reason, one of:
      "config"                 a setting is missing or invalid (names the key)
      "auth"                   the bind or the Slack token was refused
      "network"                connecting failed, the connection dropped, a read timed out
      "source"                 the server answered with an error or stopped a search early
      "input"                  a directory file could not be used (source = "file")

Rejected entries are not errors: they are data in the sync summary, and the good entries load.
"""

from __future__ import annotations

from typing import Literal

Reason = Literal["config", "auth", "network", "source", "input"]


class SyncError(Exception):
    """A sync could not read its source whole; the message is one line, without secrets."""

    def __init__(self, message: str, reason: Reason) -> None:
        super().__init__(message)
        self.reason: Reason = reason
