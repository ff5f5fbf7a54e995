"""The journal's lifecycle as SMEV 3 message exchange 1.1 reports it on the wire.

The journal keeps ten states per message (:class:`~gateway.core.lifecycle.MessageState`);
1.1 has eight ``InteractionStatusType`` codes. :data:`STATUS_TABLE` is the one place that
says which code a message of a given kind shows in a given state (``MessageMetadata/Status``,
``AsyncProcessingStatus/StatusCategory``); docs/smev3-compatibility.md, section 2, explains
each row.
"""

from __future__ import annotations

from enum import StrEnum
from typing import Final

from gateway.core.envelope import MessageKind
from gateway.core.lifecycle import MessageState


class InteractionStatus(StrEnum):
    """``basic:InteractionStatusType`` of SMEV 3 message exchange 1.1."""

    DOES_NOT_EXIST = "doesNotExist"
    REQUEST_IS_QUEUED = "requestIsQueued"
    REQUEST_IS_ACCEPTED_BY_SMEV = "requestIsAcceptedBySmev"
    REQUEST_IS_REJECTED_BY_SMEV = "requestIsRejectedBySmev"
    UNDER_PROCESSING = "underProcessing"
    RESPONSE_IS_ACCEPTED_BY_SMEV = "responseIsAcceptedBySmev"
    CANCELLED = "cancelled"
    RESPONSE_IS_DELIVERED = "responseIsDelivered"


S = MessageState
I = InteractionStatus  # noqa: E741 - the table reads as a table with short names

STATUS_TABLE: Final[dict[MessageKind, dict[MessageState, InteractionStatus]]] = {
    MessageKind.REQUEST: {
        S.ACCEPTED: I.REQUEST_IS_QUEUED,
        S.QUEUED: I.REQUEST_IS_ACCEPTED_BY_SMEV,
        S.DELIVERED: I.REQUEST_IS_ACCEPTED_BY_SMEV,
        S.ACKED: I.UNDER_PROCESSING,
        S.RESPONDED: I.RESPONSE_IS_ACCEPTED_BY_SMEV,
        S.RESPONSE_DELIVERED: I.RESPONSE_IS_DELIVERED,
        S.REJECTED: I.REQUEST_IS_REJECTED_BY_SMEV,
        S.FAILED: I.REQUEST_IS_REJECTED_BY_SMEV,
        S.EXPIRED: I.REQUEST_IS_REJECTED_BY_SMEV,
        S.DEAD_LETTERED: I.REQUEST_IS_ACCEPTED_BY_SMEV,
        S.PURGED: I.REQUEST_IS_REJECTED_BY_SMEV,
    },
    MessageKind.RESPONSE: {
        S.ACCEPTED: I.RESPONSE_IS_ACCEPTED_BY_SMEV,
        S.QUEUED: I.RESPONSE_IS_ACCEPTED_BY_SMEV,
        S.DELIVERED: I.RESPONSE_IS_ACCEPTED_BY_SMEV,
        S.ACKED: I.RESPONSE_IS_DELIVERED,
        # A response has no answer of its own; these two never occur for one.
        S.RESPONDED: I.RESPONSE_IS_DELIVERED,
        S.RESPONSE_DELIVERED: I.RESPONSE_IS_DELIVERED,
        # 1.1 has no code for a refused response; the nearest one.
        S.REJECTED: I.REQUEST_IS_REJECTED_BY_SMEV,
        S.FAILED: I.REQUEST_IS_REJECTED_BY_SMEV,
        S.EXPIRED: I.REQUEST_IS_REJECTED_BY_SMEV,
        S.DEAD_LETTERED: I.RESPONSE_IS_ACCEPTED_BY_SMEV,
        S.PURGED: I.REQUEST_IS_REJECTED_BY_SMEV,
    },
}
"""Message kind and journal state -> the 1.1 status code the wire shows."""


def interaction_status(kind: MessageKind, state: MessageState | None) -> InteractionStatus:
    """The 1.1 code of a message of ``kind`` in ``state``; ``None``: not in the journal."""
    if state is None:
        return InteractionStatus.DOES_NOT_EXIST
    return STATUS_TABLE[kind][state]
