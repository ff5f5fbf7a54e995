"""The journal as an outbox: what was accepted gets published, even if its process died.

The router journals a message ACCEPTED, publishes it, then journals it QUEUED (or
leaves that to whoever takes it first: :mod:`gateway.router.marks`). A process killed
between the commit and the broker's confirm leaves the message ACCEPTED and
unpublished, and nobody may be left to send it again: a provider whose
SendResponse got no answer does not retry it (its request comes back instead, and the
bus drops that copy as already answered), a portal whose submit was cut off may never
retry. :class:`Relay` finds such messages (ACCEPTED for longer than ``after``) and
publishes them, then journals them QUEUED, so every accepted message is delivered or
dead-lettered.

A message a live process is still publishing (a broker outage can hold a confirm for
long) may be published twice; consumers drop the redundant copy by its journal state
(:mod:`gateway.router.pulls`), as they do for any at-least-once copy.
"""

from __future__ import annotations

from datetime import timedelta

import structlog

from gateway import request_id
from gateway.core.envelope import MessageKind
from gateway.core.lifecycle import MessageState
from gateway.ops import metrics
from gateway.ops.metrics import MessageOutcome
from gateway.router.moves import Moves
from gateway.store.base import Store
from gateway.store.records import MessageRecord, NewMessage
from gateway.transport.base import (
    HEADER_KIND,
    HEADER_REQUEST_ID,
    HEADER_SENDER,
    HEADER_TYPE,
    Direction,
    Message,
    Transport,
)

log = structlog.get_logger(__name__)

#: How many stranded messages one sweep relays at most.
BATCH = 100


def direction_of(kind: MessageKind) -> Direction:
    return Direction.REQUESTS if kind is MessageKind.REQUEST else Direction.RESPONSES


def queued(message: NewMessage | MessageRecord, body: bytes) -> Message:
    """``message`` as the transport carries it, with the request id bound now, if any
    (:mod:`gateway.request_id`; the relay's sweep has none to give)."""
    headers = {
        HEADER_SENDER: message.sender,
        HEADER_TYPE: message.message_type,
        HEADER_KIND: str(message.kind),
    }
    if (traced := request_id.current()) is not None:
        headers[HEADER_REQUEST_ID] = traced
    return Message(
        message_id=message.message_id,
        body=body,
        headers=headers,
        expires_at=message.expires_at,
    )


class Relay:
    """Publishes messages left ACCEPTED for longer than ``after``."""

    def __init__(
        self, store: Store, transport: Transport, moves: Moves, *, after: timedelta
    ) -> None:
        self.store = store
        self.transport = transport
        self.moves = moves
        self.after = after

    async def sweep(self) -> int:
        """Relay what is stranded now (up to :data:`BATCH`); how many were relayed."""
        before = self.moves.clock.now() - self.after
        page = await self.store.find(state=MessageState.ACCEPTED, limit=BATCH)
        relayed = 0
        for record in page.items:
            if record.updated_at > before:
                break  # oldest first: the rest are younger still
            await self._relay(record)
            relayed += 1
        return relayed

    async def _relay(self, record: MessageRecord) -> None:
        if record.xml is None:  # listings carry the body; a record without one is a bug
            raise ValueError(f"message {record.message_id} was listed without its body")
        direction = direction_of(record.kind)
        await self.transport.publish(direction, record.recipient, queued(record, record.xml))
        await self.moves.mark_queued(record, f"relayed to {direction}.{record.recipient}")
        # Counted here: the process that accepted it died before counting it.
        metrics.count_message(
            record.message_type, record.sender, record.recipient, MessageOutcome.ACCEPTED
        )
        log.warning(
            "stranded_message_relayed",
            message_id=record.message_id,
            kind=str(record.kind),
            recipient=record.recipient,
            accepted_at=record.updated_at.isoformat(),
        )
