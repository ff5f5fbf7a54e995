"""What the bus does with a copy of a message, by the state the journal has it in.

Queues deliver at least once: a copy may come from a queue after its message was
handed out, answered, expired or dead-lettered, and an Ack may come for a message
handed out by another process. These decisions are pure and made here only (the
table is walked state by state in ``tests/unit/test_copies.py``); the router carries
them out (:mod:`gateway.router.pulls`, :mod:`gateway.router.deadletters`,
:mod:`gateway.ops.deadletters`).
"""

from __future__ import annotations

from enum import StrEnum

from gateway.core.lifecycle import MessageState, can_transition

S = MessageState


class CopyAction(StrEnum):
    """What to do with a copy taken from a queue."""

    #: QUEUED: hand it out (journal DELIVERED).
    DELIVER = "deliver"
    #: ACCEPTED: its sender has not journaled QUEUED yet; journal it, then hand it out.
    QUEUE_AND_DELIVER = "queue_and_deliver"
    #: DELIVERED and held by no one here: its hold lapsed (visibility timeout, the
    #: process that handed it out died); journal it QUEUED again, then hand it out.
    REDELIVER = "redeliver"
    #: Its delivery is over, or the caller holds it right now: ack the copy, skip it.
    DROP = "drop"
    #: Not to be decided now: back to its queue (the delivery limit bounds the loop).
    REQUEUE = "requeue"


#: States in which a message's delivery is over: a further copy carries nothing new.
#: A DEAD_LETTERED message's copy in the dead-letter queue is the one an operator
#: replays; a stray copy elsewhere is dropped.
DELIVERY_OVER: frozenset[MessageState] = frozenset(
    {
        S.ACKED,
        S.RESPONDED,
        S.RESPONSE_DELIVERED,
        S.REJECTED,
        S.FAILED,
        S.EXPIRED,
        S.DEAD_LETTERED,
        S.PURGED,
    }
)


def on_copy(state: MessageState, *, held_here: bool, lost_race: bool = False) -> CopyAction:
    """The action for a copy whose message the journal has in ``state``.

    ``held_here``: the caller holds a copy of it right now (handed out, not acked);
    ``lost_race``: another copy moved it while this one was being handed out (two
    copies pulled at once), so a DELIVERED message is the other copy's."""
    if state in DELIVERY_OVER:
        return CopyAction.DROP
    if state is S.DELIVERED:
        return CopyAction.DROP if held_here or lost_race else CopyAction.REDELIVER
    if lost_race:
        return CopyAction.REQUEUE
    if state is S.ACCEPTED:
        return CopyAction.QUEUE_AND_DELIVER
    return CopyAction.DELIVER  # QUEUED


class DeadLetterAction(StrEnum):
    """What the journal does when the transport reports a message dead-lettered."""

    #: Journal the dead letter's state (DEAD_LETTERED, or EXPIRED).
    RECORD = "record"
    #: ACCEPTED: the broker had the message (it dead-lettered it) before its publisher
    #: journaled QUEUED; journal QUEUED first, as a consumer's copy would, then record.
    QUEUE_AND_RECORD = "queue_and_record"
    #: Journaled so already (events come at least once).
    ALREADY = "already"
    #: Its lifecycle forbids the move (answered, expired first): leave it alone.
    IGNORE = "ignore"


def on_dead_letter(state: MessageState, target: MessageState) -> DeadLetterAction:
    """The action for a dead letter bound for ``target`` whose message is in ``state``."""
    if state is target:
        return DeadLetterAction.ALREADY
    if state is S.ACCEPTED:
        return DeadLetterAction.QUEUE_AND_RECORD
    if can_transition(state, target):
        return DeadLetterAction.RECORD
    return DeadLetterAction.IGNORE


class AckAction(StrEnum):
    """What a consumer's Ack of a message it was handed does."""

    #: DELIVERED: journal ACKED.
    ACKNOWLEDGE = "acknowledge"
    #: Its final answer came first (RESPONDED, RESPONSE_DELIVERED): nothing to journal.
    ALREADY_SETTLED = "already_settled"
    #: Not a message out for acknowledgement: the caller is told it holds none such.
    NOT_HELD = "not_held"


def on_ack(state: MessageState) -> AckAction:
    if state is S.DELIVERED:
        return AckAction.ACKNOWLEDGE
    if state in (S.RESPONDED, S.RESPONSE_DELIVERED):
        return AckAction.ALREADY_SETTLED
    return AckAction.NOT_HELD


def why_not_replayable(state: MessageState) -> str | None:
    """Why an operator may not put a dead letter in ``state`` back in its queue (None: may)."""
    if state is S.DEAD_LETTERED:
        return None
    if state is S.EXPIRED:
        return "expired: its end of life has passed"
    return f"journal has it {state}, not DEAD_LETTERED (is the router running?)"


def why_not_purgeable(state: MessageState) -> str | None:
    """Why an operator may not purge a dead letter in ``state`` (None: may; PURGED is
    purged already, which a purge finishing an earlier one takes as done)."""
    if state in (S.DEAD_LETTERED, S.EXPIRED, S.PURGED):
        return None
    return f"journal has it {state}, not DEAD_LETTERED (is the router running?)"
