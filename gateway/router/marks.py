"""QUEUED marks journaled after the sender has its answer, not before.

The router journals a message ACCEPTED, publishes it, and once the broker confirms
it the message is QUEUED. Journaling that move before answering the sender would
cost the hot path one journal statement per message, and most of the time nobody
needs it: the message is handed out within milliseconds (pulled, answered by a push
provider, taken as a reply), and each of those moves takes an ACCEPTED message
through QUEUED itself, in its own statement. So the sender's answer says what the
broker confirmed (QUEUED), the mark waits here, and a message this process hands
out meanwhile leaves (:meth:`QueuedMarks.discard`). Marks pending for :data:`DELAY`
seconds are journaled (:meth:`QueuedMarks.flush`: a supervised loop of the
composition root, and once more when the bus closes); each is conditional on the
version read while ACCEPTED, so a mark never takes back a message another process
moved on meanwhile.

A process that dies with marks pending leaves published messages ACCEPTED: the
relay (:mod:`gateway.router.outbox`, after ``relay_after_s``, longer than
:data:`DELAY`) publishes them again and journals them QUEUED, and consumers drop
the redundant copy by its journal state, as they drop any at-least-once copy.
"""

from __future__ import annotations

import time
from typing import Final

import structlog

from gateway.core.lifecycle import IllegalTransition
from gateway.router.moves import Moves
from gateway.store.records import MessageRecord

log = structlog.get_logger(__name__)

#: Seconds a mark waits for the message to be handed out before it is journaled.
DELAY: Final = 1.0


class QueuedMarks:
    def __init__(self, moves: Moves, delay: float = DELAY) -> None:
        self._moves = moves
        self._delay = delay
        #: message id -> (the record as journaled ACCEPTED, the move's reason, when
        #: added); oldest first.
        self._pending: dict[str, tuple[MessageRecord, str, float]] = {}
        self._publishing: set[str] = set()

    def publishing(self, message_id: str) -> None:
        """The message is being published: whether it is handed out before the broker
        confirms is told by :meth:`published`."""
        self._publishing.add(message_id)

    def published(self, accepted: MessageRecord, reason: str) -> bool:
        """The broker confirmed ``accepted``: journal it QUEUED later, unless it is
        handed out first. False if it was handed out in this process already (while the
        broker confirmed): the journal has moved it past QUEUED itself."""
        try:
            self._publishing.remove(accepted.message_id)
        except KeyError:
            return False
        self._pending[accepted.message_id] = (accepted, reason, time.monotonic())
        return True

    def discard(self, message_id: str) -> None:
        """The message was moved on in this process (or its publish failed): its mark
        is not needed."""
        self._pending.pop(message_id, None)
        self._publishing.discard(message_id)

    def __contains__(self, message_id: str) -> bool:
        return message_id in self._pending

    def __len__(self) -> int:
        return len(self._pending)

    async def flush(self, *, everything: bool = False) -> int:
        """Journal the marks pending for :data:`DELAY` seconds (``everything``: all of
        them); how many were journaled. A mark the journal could not take (it is down)
        stays pending."""
        due = time.monotonic() - self._delay
        done = 0
        for message_id, (record, reason, added) in list(self._pending.items()):
            if not everything and added > due:
                break  # the rest are younger still
            if message_id not in self._pending:
                continue  # handed out while an earlier mark was journaled
            try:
                await self._moves.mark_queued(record, reason)
                done += 1
            except IllegalTransition as refused:  # moved in a way no mark can follow
                log.warning("queued_mark_dropped", message_id=message_id, error=str(refused))
            self._pending.pop(message_id, None)
        return done
