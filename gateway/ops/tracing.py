"""A bus message's lifecycle trace (:class:`~gateway.wire.rest.MessageTrace`) from the
journal: the REST API's ``GET /api/v1/messages/{id}`` and the ops console share it."""

from __future__ import annotations

from gateway.store.base import Store
from gateway.store.records import MessageRecord, TransitionRecord
from gateway.wire.rest import MessageTrace, TransitionView


async def message_trace(journal: Store, message: MessageRecord) -> MessageTrace:
    """The trace of ``message`` (as read from ``journal``): transitions and responses."""
    history = await journal.history(message.message_id)
    responses = await journal.responses_to(message.message_id)
    return MessageTrace(
        message_id=message.message_id,
        kind=str(message.kind),
        sender=message.sender,
        recipient=message.recipient,
        message_type=message.message_type,
        in_reply_to=message.in_reply_to,
        state=str(message.state),
        created_at=message.created_at,
        updated_at=message.updated_at,
        expires_at=message.expires_at,
        test_message=message.test_message,
        transitions=[transition_view(t) for t in history],
        responses=[r.message_id for r in responses],
    )


def transition_view(t: TransitionRecord) -> TransitionView:
    return TransitionView(
        from_state=None if t.from_state is None else str(t.from_state),
        to_state=str(t.to_state),
        at=t.at,
        reason=t.reason,
        actor=t.actor,
    )
