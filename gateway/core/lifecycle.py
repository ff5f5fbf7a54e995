"""The lifecycle of one bus message: states and the only legal transitions.

A request goes ACCEPTED -> QUEUED -> DELIVERED -> ACKED -> RESPONDED ->
RESPONSE_DELIVERED. A response message has its own, shorter life: ACCEPTED ->
QUEUED -> DELIVERED -> ACKED. Departures from the happy path:

* DELIVERED -> QUEUED: delivered but not acked in time (visibility timeout,
  consumer died); the broker redelivers it.
* REJECTED: refused by the bus at submission (bad signature, schema, rights);
  terminal, nothing was queued.
* FAILED: the bus could not process an accepted message (publish refused by the
  broker); terminal, and the sender is told.
* EXPIRED: end of life reached before delivery or before the answer; terminal.
* DEAD_LETTERED: delivery limit reached or a consumer rejected it; terminal
  until an operator replays it, which puts it back to QUEUED.
* PURGED: an operator dropped it from its dead-letter queue (a DEAD_LETTERED or an
  EXPIRED one, whose copy lies there too); terminal, and the journal says who.
"""

from __future__ import annotations

from enum import StrEnum

from gateway.core.errors import InternalError


class MessageState(StrEnum):
    ACCEPTED = "ACCEPTED"
    QUEUED = "QUEUED"
    DELIVERED = "DELIVERED"
    ACKED = "ACKED"
    RESPONDED = "RESPONDED"
    RESPONSE_DELIVERED = "RESPONSE_DELIVERED"
    REJECTED = "REJECTED"
    FAILED = "FAILED"
    EXPIRED = "EXPIRED"
    DEAD_LETTERED = "DEAD_LETTERED"
    PURGED = "PURGED"


S = MessageState

TRANSITIONS: dict[MessageState, frozenset[MessageState]] = {
    S.ACCEPTED: frozenset({S.QUEUED, S.REJECTED, S.FAILED, S.EXPIRED}),
    S.QUEUED: frozenset({S.DELIVERED, S.EXPIRED, S.DEAD_LETTERED}),
    S.DELIVERED: frozenset({S.ACKED, S.QUEUED, S.RESPONDED, S.EXPIRED, S.DEAD_LETTERED}),
    S.ACKED: frozenset({S.RESPONDED, S.EXPIRED}),
    S.RESPONDED: frozenset({S.RESPONSE_DELIVERED}),
    S.RESPONSE_DELIVERED: frozenset(),
    S.REJECTED: frozenset(),
    S.FAILED: frozenset(),
    S.EXPIRED: frozenset({S.PURGED}),
    S.DEAD_LETTERED: frozenset({S.QUEUED, S.PURGED}),
    S.PURGED: frozenset(),
}

TERMINAL: frozenset[MessageState] = frozenset(s for s, nxt in TRANSITIONS.items() if not nxt)


class IllegalTransition(InternalError):
    code = "internal"


def can_transition(current: MessageState, target: MessageState) -> bool:
    return target in TRANSITIONS[current]


def check_transition(current: MessageState, target: MessageState) -> MessageState:
    """Return ``target`` if the move is legal, else raise :class:`IllegalTransition`."""
    if not can_transition(current, target):
        raise IllegalTransition(
            f"message cannot go from {current} to {target}",
            current=str(current),
            target=str(target),
        )
    return target
