"""What Twilio tells Herald about SMS, as plain data. Pure functions, tested as tables.

Inbound messages (:func:`read_inbound`): the whole message, trimmed and in any case, is a keyword
(Twilio's own opt-out keywords; a trailing ``.`` or ``!`` is forgiven). ``ACK`` may be followed by
text (an alert id). Anything else is ``other``.

Status callbacks (:func:`advance`): Twilio's ``MessageStatus`` only ever moves a delivery forward.
Rank: queued/accepted/scheduled < sending < sent < delivered (``read`` counts as delivered);
``undelivered`` and ``failed`` are terminal: they override anything before ``delivered`` and nothing
overrides them. Callbacks may come twice or out of order; applying them in any order ends in the
same state. The ledger records a Twilio message as ``sent`` when Twilio accepts it, so in practice a
callback moves ``sent`` to ``delivered`` or ``failed``.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass

OPT_OUT = frozenset({"STOP", "STOPALL", "UNSUBSCRIBE", "CANCEL", "END", "QUIT"})
OPT_IN = frozenset({"START", "YES", "UNSTOP"})
HELP = frozenset({"HELP", "INFO"})
CONFIRM = frozenset({"OK", "1"})  # not YES: Twilio reserves it for opting back in
# Twilio error codes on a failed/undelivered callback that mean the number itself is bad or dead
# (SPEC: 30005 unknown number, 30006 landline). 30003 (handset switched off or out of coverage) says
# nothing final about the number: a soft failure (bot.recipients.soft_failures), never suppressed.
SUPPRESSING_CODES = frozenset({"30005", "30006"})


class Command(enum.Enum):
    OPT_OUT = "opt_out"
    OPT_IN = "opt_in"
    HELP = "help"
    ACK = "ack"
    CONFIRM = "confirm"
    OTHER = "other"


def read_inbound(body: str) -> Command:
    """The command an inbound SMS body carries."""
    words = body.strip().upper().rstrip(".!").split()
    if not words:
        return Command.OTHER
    if words[0] == "ACK":
        return Command.ACK
    if len(words) != 1:
        return Command.OTHER
    word = words[0]
    if word in OPT_OUT:
        return Command.OPT_OUT
    if word in OPT_IN:
        return Command.OPT_IN
    if word in HELP:
        return Command.HELP
    if word in CONFIRM:
        return Command.CONFIRM
    return Command.OTHER


# Ledger states by rank; None marks a terminal state.
_RANK: dict[str, int | None] = {"queued": 0, "sending": 1, "sent": 2, "delivered": 3, "failed": None}
_REPORTED: dict[str, str] = {
    "queued": "queued",
    "accepted": "queued",
    "scheduled": "queued",
    "sending": "sending",
    "sent": "sent",
    "delivered": "delivered",
    "read": "delivered",
    "undelivered": "failed",
    "failed": "failed",
}


def ledger_state(message_status: str) -> str | None:
    """Twilio's ``MessageStatus`` as a ledger state (None for statuses Herald does not track)."""
    return _REPORTED.get(message_status.strip().lower())


def advance(current: str, reported: str) -> str | None:
    """The delivery's new state after a callback reporting ``reported`` (a ledger state), or None
    when the callback must not change it (repeated, stale, or the delivery is already final)."""
    if current not in _RANK or reported not in _RANK:
        return None
    if _RANK[current] is None:  # failed is terminal
        return None
    new_rank = _RANK[reported]
    current_rank = _RANK[current]
    assert current_rank is not None
    if new_rank is None:  # failed overrides anything short of delivered
        return reported if current != "delivered" else None
    return reported if new_rank > current_rank else None


def predecessors(reported: str) -> tuple[str, ...]:
    """The states :func:`advance` moves to ``reported``: the guard of the conditional UPDATE."""
    return tuple(state for state in _RANK if advance(state, reported) == reported)


@dataclass(frozen=True, slots=True)
class StatusReport:
    """One status callback: which message, what Twilio says, and its error code if any."""

    message_sid: str
    status: str  # Twilio's MessageStatus, lower-case
    to: str = ""
    error_code: str = ""

    @property
    def suppresses(self) -> bool:
        return ledger_state(self.status) == "failed" and self.error_code in SUPPRESSING_CODES
