"""The values the message journal takes in and hands out: frozen, no I/O."""

from __future__ import annotations

import re
import uuid
from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum

from gateway.core.envelope import MessageKind
from gateway.core.errors import InvalidContent
from gateway.core.lifecycle import MessageState

_SHA256_HEX = re.compile(r"[0-9a-f]{64}")
_CANONICAL_UUID = re.compile(r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}")

DEFAULT_PAGE_SIZE = 100
MAX_PAGE_SIZE = 1000


class AcceptOutcome(StrEnum):
    ACCEPTED = "accepted"
    #: The same MessageID with the same content was already journaled: nothing changed.
    DUPLICATE = "duplicate"


def canonical_message_id(message_id: str) -> str:
    """The canonical (lowercase, hyphenated) form of a UUID MessageID.

    Raises :class:`InvalidContent` when ``message_id`` is not a UUID.
    """
    # Most ids are canonical already (the bus's own, re-read): no UUID round trip.
    if type(message_id) is str and _CANONICAL_UUID.fullmatch(message_id):
        return message_id
    try:
        return str(uuid.UUID(message_id))
    except (ValueError, AttributeError, TypeError):
        raise InvalidContent(
            f"MessageID {message_id!r} is not a UUID", message_id=str(message_id)
        ) from None


#: Longest participant id, actor name and message type (namespace) the journal stores.
MAX_NAME = 255
MAX_MESSAGE_TYPE = 1024
MAX_REJECTION_CODE = 64


def require_aware(name: str, value: datetime | None) -> None:
    """Raise ``ValueError`` if ``value`` is a naive datetime (the journal stores UTC)."""
    if value is not None and value.utcoffset() is None:
        raise ValueError(f"{name} must be timezone-aware, got {value!r}")


def require_name(name: str, value: str | None, limit: int = MAX_NAME) -> None:
    """Raise ``ValueError`` if ``value`` is empty or longer than the column holds."""
    if value is not None and not 0 < len(value) <= limit:
        raise ValueError(f"{name} must be 1..{limit} characters long")


@dataclass(frozen=True, slots=True)
class NewMessage:
    """A message the bus has verified and is about to journal as ``ACCEPTED``.

    ``message_id`` is normalized to its canonical UUID form. A response names the
    request it answers in ``in_reply_to``; a request has none.
    """

    message_id: str
    kind: MessageKind
    sender: str
    recipient: str
    message_type: str
    content_sha256: str
    xml: bytes
    in_reply_to: str | None = None
    expires_at: datetime | None = None
    test_message: bool = False
    #: On a response that refuses (RequestRejected): its first RejectionReasonCode.
    rejection_code: str | None = None

    def __post_init__(self) -> None:
        object.__setattr__(self, "message_id", canonical_message_id(self.message_id))
        object.__setattr__(self, "kind", MessageKind(self.kind))
        if self.kind is MessageKind.RESPONSE:
            if self.in_reply_to is None:
                raise InvalidContent(
                    "a response must name the request it answers (in_reply_to)",
                    message_id=self.message_id,
                )
            object.__setattr__(self, "in_reply_to", canonical_message_id(self.in_reply_to))
        elif self.in_reply_to is not None:
            raise InvalidContent(
                "a request cannot be in reply to another message", message_id=self.message_id
            )
        if not _SHA256_HEX.fullmatch(self.content_sha256):
            raise ValueError("content_sha256 must be 64 lowercase hex digits")
        if self.rejection_code is not None and self.kind is not MessageKind.RESPONSE:
            raise InvalidContent("only a response carries a rejection code")
        require_name("rejection_code", self.rejection_code, MAX_REJECTION_CODE)
        require_name("sender", self.sender)
        require_name("recipient", self.recipient)
        require_name("message_type", self.message_type, MAX_MESSAGE_TYPE)
        require_aware("expires_at", self.expires_at)


@dataclass(frozen=True, slots=True)
class MessageRecord:
    """A journaled message as it stands now. ``version`` grows by one per transition.

    ``xml``, the SOAP body as submitted, is read by :meth:`~gateway.store.base.Journal.get`
    and the listings; what a move or an accept returns leaves it out (``None``): the
    bus never needs the body back on its hot path.
    """

    message_id: str
    kind: MessageKind
    sender: str
    recipient: str
    message_type: str
    in_reply_to: str | None
    content_sha256: str
    xml: bytes | None
    state: MessageState
    created_at: datetime
    updated_at: datetime
    expires_at: datetime | None
    test_message: bool
    version: int


@dataclass(frozen=True, slots=True)
class TransitionRecord:
    """One move of a message's state; the first one has ``from_state`` ``None``."""

    id: int
    message_id: str
    from_state: MessageState | None
    to_state: MessageState
    at: datetime
    reason: str | None
    actor: str | None


@dataclass(frozen=True, slots=True)
class AcceptResult:
    outcome: AcceptOutcome
    #: The journaled message: the new one, or the one already there for a duplicate.
    record: MessageRecord

    @property
    def duplicate(self) -> bool:
        return self.outcome is AcceptOutcome.DUPLICATE


@dataclass(frozen=True, slots=True)
class Acknowledged:
    """What :meth:`~gateway.store.base.Journal.acknowledge` found and did."""

    #: The message as it stands now (without its body).
    record: MessageRecord
    #: True if this call moved it DELIVERED -> ACKED.
    moved: bool


@dataclass(frozen=True, slots=True)
class Answered:
    """What :meth:`~gateway.store.base.Journal.answer` did."""

    #: The response journaled (or found journaled: a retry); ``None`` when another
    #: final answer holds the request's claim and nothing was written.
    result: AcceptResult | None
    #: The request as it stands after the call (without its body).
    request: MessageRecord


@dataclass(frozen=True, slots=True)
class Page:
    """One page of :meth:`Store.find`; pass ``next_cursor`` as ``after`` for the next."""

    items: tuple[MessageRecord, ...]
    next_cursor: str | None
