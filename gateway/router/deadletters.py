"""The journal's side of dead letters: what the transport dead-letters, the journal says.

The router watches the transport's dead-letter events
(:meth:`~gateway.transport.base.Transport.watch_dead_letters`) with
:meth:`DeadLetterJournal.record`:

* reason ``expired`` -> ``EXPIRED``;
* any other reason (``rejected``, ``delivery_limit``, ``retries_exhausted``) ->
  ``DEAD_LETTERED``, the journal reason saying which and why
  (``"delivery_limit: delivered 2 times without an ack"``).

A message still ACCEPTED was dead-lettered before its publisher journaled it QUEUED
(a consumer refused it at once): the journal records ``QUEUED`` first, as a consumer's
copy would (:func:`gateway.core.copies.on_dead_letter`), and the publisher, second,
finds the move made.

Events come at least once, so recording is idempotent: a message already in the
target state, one whose lifecycle forbids the move (it was answered, it expired
first), or one the journal does not know, is logged and left alone; the event is
then done (acked), never retried in a loop. Only a failure that may pass (the
journal unreachable, a transient bus error) propagates, so the transport offers the
event again after a pause. The transition time is when the bus records it (the
router's clock), moments after the dead-lettering while the router runs.

Replay (``smevbus dlq replay``) is the way back: :meth:`DeadLetterJournal.replayed`
moves ``DEAD_LETTERED`` to ``QUEUED`` with reason ``"replayed by operator"``; purge
(``smevbus dlq purge``) the way out: :meth:`DeadLetterJournal.purged` moves
``DEAD_LETTERED`` or ``EXPIRED`` to ``PURGED``. Both name the operator as the actor.
"""

from __future__ import annotations

import structlog

from gateway.core.clock import Clock
from gateway.core.copies import DeadLetterAction, on_dead_letter
from gateway.core.errors import SmevbusError
from gateway.core.lifecycle import MessageState
from gateway.ops import metrics
from gateway.ops.metrics import MessageOutcome
from gateway.router.moves import Moves
from gateway.store.base import Store
from gateway.store.records import MessageRecord
from gateway.transport.base import DeadLetterEvent, DeadLetterReason

log = structlog.get_logger(__name__)

REPLAYED = "replayed by operator"
PURGED = "purged from the dead-letter queue by operator"
#: The journal's ``actor`` for moves the transport caused, and for operator replays.
TRANSPORT_ACTOR, OPERATOR_ACTOR = "transport", "operator"


def target_state(reason: DeadLetterReason) -> MessageState:
    """The journal state a dead letter with this reason puts its message in."""
    return (
        MessageState.EXPIRED if reason is DeadLetterReason.EXPIRED else MessageState.DEAD_LETTERED
    )


def journal_reason(event: DeadLetterEvent) -> str:
    letter = event.letter
    return f"{letter.reason}: {letter.detail}" if letter.detail else str(letter.reason)


class DeadLetterJournal:
    def __init__(self, store: Store, clock: Clock) -> None:
        self.store = store
        self.clock = clock
        self._moves = Moves(store, clock)

    async def record(self, event: DeadLetterEvent) -> None:
        """Journal one dead letter (see the module docstring); idempotent."""
        message_id = event.letter.message.message_id
        target = target_state(event.letter.reason)
        bound = log.bind(
            message_id=message_id,
            participant=event.participant,
            direction=str(event.direction),
            dead_reason=str(event.letter.reason),
        )
        try:
            record = await self.store.get(message_id)
            action = on_dead_letter(record.state, target)
            if action is DeadLetterAction.ALREADY:
                bound.info("dead_letter_already_journaled", state=str(target))
                return
            if record.recipient != event.participant or action is DeadLetterAction.IGNORE:
                bound.warning(
                    "dead_letter_not_journaled",
                    state=str(record.state),
                    target=str(target),
                    recipient=record.recipient,
                )
                return
            if action is DeadLetterAction.QUEUE_AND_RECORD:  # the publisher, second, finds it
                reason = f"in {event.direction}.{event.participant} (seen dead-lettered)"
                await self._moves.mark_queued(record, reason)
            await self.store.transition(
                message_id,
                target,
                at=self.clock.now(),
                reason=journal_reason(event),
                actor=TRANSPORT_ACTOR,
            )
            metrics.count_message(
                record.message_type,
                record.sender,
                record.recipient,
                MessageOutcome.EXPIRED
                if target is MessageState.EXPIRED
                else MessageOutcome.DEAD_LETTERED,
            )
        except SmevbusError as exc:
            if exc.transient:
                raise
            # Unknown message, or another writer moved it first: nothing to record.
            bound.warning("dead_letter_not_journaled", code=exc.code, error=exc.message)
            return
        bound.info("dead_letter_journaled", state=str(target), detail=event.letter.detail)

    async def replayed(self, message_id: str, operator: str = OPERATOR_ACTOR) -> MessageRecord:
        """Journal ``operator``'s replay: ``DEAD_LETTERED`` -> ``QUEUED``.

        Raises :class:`~gateway.core.lifecycle.IllegalTransition` for a message in
        any other state, :class:`~gateway.core.errors.NotFound` for an unknown one.
        """
        record = await self.store.transition(
            message_id,
            MessageState.QUEUED,
            at=self.clock.now(),
            reason=REPLAYED,
            actor=operator,
        )
        log.info("dead_letter_replayed", message_id=message_id, operator=operator)
        return record

    async def purged(self, message_id: str, operator: str) -> MessageRecord:
        """Journal ``operator``'s purge: ``DEAD_LETTERED`` or ``EXPIRED`` -> ``PURGED``
        (raises as :meth:`replayed` does)."""
        record = await self.store.transition(
            message_id,
            MessageState.PURGED,
            at=self.clock.now(),
            reason=PURGED,
            actor=operator,
        )
        log.info("dead_letter_purged", message_id=message_id, operator=operator)
        return record

    async def replay_failed(
        self, message_id: str, error: str, operator: str = OPERATOR_ACTOR
    ) -> None:
        """Undo :meth:`replayed` when the transport could not move the message back."""
        await self.store.transition(
            message_id,
            MessageState.DEAD_LETTERED,
            at=self.clock.now(),
            reason=f"replay failed: {error}",
            actor=operator,
        )
