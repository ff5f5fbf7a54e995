"""The router's writes to the journal: lifecycle moves made by the bus itself."""

from __future__ import annotations

import functools
from datetime import datetime

from gateway.core.clock import Clock
from gateway.core.envelope import MessageMetadata, ParticipantRef
from gateway.core.interaction_status import interaction_status
from gateway.core.lifecycle import IllegalTransition, MessageState
from gateway.core.registry import Participant
from gateway.store.base import Store, TransitionConflict
from gateway.store.records import MessageRecord


class Moves:
    def __init__(self, store: Store, clock: Clock) -> None:
        self.store = store
        self.clock = clock

    async def move(
        self,
        message_id: str,
        state: MessageState,
        reason: str | None,
        *,
        seen: MessageRecord | None = None,
    ) -> MessageRecord:
        """Move the message from whatever state it is in now.

        ``seen``, the record as the caller just read it, spares the journal a read;
        if the message moved since, the move is decided again on a fresh read.
        """
        for _ in range(2):  # as seen, then as the refused move found it
            if seen is None:
                break
            try:
                return await self.store.transition(
                    message_id,
                    state,
                    at=self.clock.now(),
                    reason=reason,
                    actor="bus",
                    expected_version=seen.version,
                    expected_state=seen.state,
                )
            except TransitionConflict as refused:
                seen = refused.record
        return await self.store.transition(
            message_id, state, at=self.clock.now(), reason=reason, actor="bus"
        )

    async def move_from(
        self, message_id: str, from_state: MessageState, to_state: MessageState, reason: str | None
    ) -> MessageRecord:
        """Move the message if it is in ``from_state`` (one journal statement);
        :class:`~gateway.store.base.TransitionConflict` if it is not."""
        return await self.store.transition(
            message_id,
            to_state,
            at=self.clock.now(),
            reason=reason,
            actor="bus",
            expected_state=from_state,
        )

    async def deliver(self, message_id: str, reason: str, queued_reason: str) -> MessageRecord:
        """QUEUED -> DELIVERED, or ACCEPTED -> QUEUED -> DELIVERED when a consumer got
        the message before its publisher journaled the confirm (one journal write);
        :class:`~gateway.store.base.TransitionConflict` from any other state."""
        return await self.store.deliver(
            message_id, at=self.clock.now(), reason=reason, queued_reason=queued_reason, actor="bus"
        )

    async def mark_queued(self, accepted: MessageRecord, reason: str) -> MessageRecord:
        """ACCEPTED -> QUEUED once the broker has the message.

        Two parties may get here first: the publisher after the broker's confirm, and a
        fast consumer that pulled the message before that; whoever is second finds the
        move made and carries on. The move is conditional on the version read while the
        message was ACCEPTED: a publisher second must not take a DELIVERED message back
        to QUEUED (a legal move on its own), or the consumer's Ack would find it QUEUED
        and the journal would never say ACKED.
        """
        message_id = accepted.message_id
        try:
            return await self.store.transition(
                message_id,
                MessageState.QUEUED,
                at=self.clock.now(),
                reason=reason,
                actor="bus",
                expected_version=accepted.version,
                expected_state=accepted.state,
            )
        except IllegalTransition as refused:  # TransitionConflict included
            found = refused.record if isinstance(refused, TransitionConflict) else None
            if found is None or found.version == accepted.version:
                found = await self.store.get(message_id)  # none, or it predates the winner
            record = found
            if record.state is MessageState.ACCEPTED:
                raise
            return record


def metadata(
    record: MessageRecord,
    sender: Participant,
    recipient: Participant,
    sent: datetime,
    *,
    delivered: datetime | None = None,
) -> MessageMetadata:
    """The wire metadata of ``record``; ``status`` is its 1.1 code (one table)."""
    return MessageMetadata(
        message_id=record.message_id,  # the canonical string: parsed inside pydantic
        message_type=record.message_type,
        kind=record.kind,
        sender=_ref(sender.mnemonic, sender.name),
        recipient=_ref(recipient.mnemonic, recipient.name),
        sending_timestamp=sent,
        delivery_timestamp=delivered,
        status=str(interaction_status(record.kind, record.state)),
    )


@functools.lru_cache(maxsize=1024)
def _ref(mnemonic: str, name: str | None) -> ParticipantRef:
    """One (frozen) reference per participant: four metadata a round trip name two each."""
    return ParticipantRef(mnemonic=mnemonic, name=name)
