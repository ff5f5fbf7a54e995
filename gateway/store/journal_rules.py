"""What the journal's two implementations decide alike: checks, errors, the path an
answered request takes, keyset filters and paging, the replay guard's purge rhythm."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

from gateway.core.errors import InvalidContent, MessageAlreadySent, NotFound
from gateway.core.lifecycle import MessageState
from gateway.store.base import TransitionConflict
from gateway.store.paging import decode_cursor, encode_cursor
from gateway.store.records import (
    MAX_PAGE_SIZE,
    AcceptOutcome,
    AcceptResult,
    MessageRecord,
    NewMessage,
    Page,
    canonical_message_id,
    require_aware,
)
from gateway.store.rows import message_of

#: How often a process deletes the replay guard's expired rows (judged by the ``now``
#: handed to ``remember``).
REPLAY_PURGE_INTERVAL = timedelta(minutes=1)

S = MessageState


def lookup_id(message_id: str) -> str:
    """The canonical id to look up; something that is not a UUID cannot be journaled."""
    try:
        return canonical_message_id(message_id)
    except InvalidContent:
        raise not_found(message_id) from None


def not_found(message_id: str) -> NotFound:
    return NotFound(f"no message {message_id} in the journal", message_id=message_id)


def conflict(
    message_id: str,
    state: MessageState,
    target: MessageState,
    version: int | None,
    record: MessageRecord | None = None,
) -> TransitionConflict:
    """``record``: the message as the refused move found it, if the store read it."""
    error = TransitionConflict(
        f"message {message_id} was moved by another writer while going {state} -> {target}",
        message_id=message_id,
        current=str(state),
        target=str(target),
        version=version,
    )
    error.record = record
    return error


def accepted_record(message: NewMessage, at: datetime) -> MessageRecord:
    """``message`` as :meth:`accept` journals it (the body left out of the record)."""
    at = at.astimezone(UTC)
    return MessageRecord(
        message_id=message.message_id,
        kind=message.kind,
        sender=message.sender,
        recipient=message.recipient,
        message_type=message.message_type,
        in_reply_to=message.in_reply_to,
        content_sha256=message.content_sha256,
        xml=None,
        state=MessageState.ACCEPTED,
        created_at=at,
        updated_at=at,
        expires_at=None if message.expires_at is None else message.expires_at.astimezone(UTC),
        test_message=message.test_message,
        version=1,
    )


def duplicate_or_refusal(message: NewMessage, existing: Mapping[str, Any]) -> AcceptResult:
    """A resubmission of ``message`` found journaled as ``existing`` (a row)."""
    record = message_of(existing)
    if record.content_sha256 != message.content_sha256:
        raise MessageAlreadySent(
            f"message {message.message_id} was already sent with different content",
            message_id=message.message_id,
        )
    return AcceptResult(AcceptOutcome.DUPLICATE, record)


@dataclass(frozen=True, slots=True)
class Step:
    from_state: MessageState
    to_state: MessageState
    reason: str | None


def answer_path(state: MessageState, final: bool, response_id: str) -> list[Step]:
    """The moves a request in ``state`` makes when an answer is journaled: a final one
    takes it to RESPONDED, an interim one to DELIVERED (it was handed out, or the
    provider could not answer), each step as the lifecycle allows; none from a state
    past those (answered before, expired, dead-lettered)."""
    steps: list[Step] = []
    if state is S.ACCEPTED:  # answered before its sender journaled the publish
        steps.append(Step(S.ACCEPTED, S.QUEUED, "answered before journaled queued"))
        state = S.QUEUED
    if state is S.QUEUED:  # consumed from its queue (push), never pulled
        steps.append(Step(S.QUEUED, S.DELIVERED, "delivered by push"))
        state = S.DELIVERED
    if final and state in (S.DELIVERED, S.ACKED):
        steps.append(Step(state, S.RESPONDED, f"by {response_id}"))
    return steps


def reply_path(state: MessageState, reason: str | None, queued_reason: str | None) -> list[Step]:
    """The moves a pushed response in ``state`` makes when it is taken
    (:meth:`~gateway.store.base.Journal.take_reply`): to ACKED through every state
    between (``queued_reason`` on ACCEPTED -> QUEUED, ``reason`` on QUEUED ->
    DELIVERED); none from a state it is not taken from (:data:`TAKEN_FROM`)."""
    steps = [
        Step(S.ACCEPTED, S.QUEUED, queued_reason),
        Step(S.QUEUED, S.DELIVERED, reason),
        Step(S.DELIVERED, S.ACKED, None),
    ]
    for n, step in enumerate(steps):
        if step.from_state is state:
            return steps[n:]
    return []


#: The states a pushed response is taken from (a copy of it is handed out from these).
TAKEN_FROM: frozenset[MessageState] = frozenset(
    step.from_state for step in reply_path(S.ACCEPTED, None, None)
)


def check_find(limit: int, since: datetime | None) -> None:
    if not 1 <= limit <= MAX_PAGE_SIZE:
        raise ValueError(f"limit must be 1..{MAX_PAGE_SIZE}, got {limit}")
    require_aware("since", since)


@dataclass
class Filters:
    """A ``WHERE`` clause of equality and keyset conditions, with its parameters.

    ``placeholder(n)`` writes the n-th parameter (``$n`` or ``?``); ``time`` converts
    a datetime as the database takes it."""

    placeholder: Callable[[int], str]
    time: Callable[[datetime], Any] = lambda value: value
    values: list[Any] = field(default_factory=list)
    conditions: list[str] = field(default_factory=list)

    def param(self, value: Any) -> str:
        self.values.append(value)
        return self.placeholder(len(self.values))

    def equal(self, column: str, value: Any) -> None:
        if value is not None:
            self.conditions.append(f"{column} = {self.param(value)}")

    def at_least(self, column: str, value: datetime | None) -> None:
        if value is not None:
            self.conditions.append(f"{column} >= {self.param(self.time(value))}")

    def after(self, at_column: str, id_column: str, cursor: str | None) -> None:
        """Rows after the keyset ``cursor`` (:func:`~gateway.store.paging.encode_cursor`)."""
        if cursor is None:
            return
        last_at, last_id = decode_cursor(cursor)
        at, same_at, last = (
            self.param(self.time(last_at)),
            self.param(self.time(last_at)),
            self.param(last_id),
        )
        self.conditions.append(
            f"({at_column} > {at} OR ({at_column} = {same_at} AND {id_column} > {last}))"
        )

    def where(self) -> str:
        return f"WHERE {' AND '.join(self.conditions)}" if self.conditions else ""


def page_of(rows: list[MessageRecord], limit: int) -> Page:
    items = tuple(rows[:limit])
    more = len(rows) > limit
    cursor = encode_cursor(items[-1].created_at, items[-1].message_id) if more else None
    return Page(items=items, next_cursor=cursor)


class ReplayPurge:
    """When a process next deletes the replay guard's expired rows."""

    def __init__(self) -> None:
        self._next: datetime | None = None

    def due(self, now: datetime) -> bool:
        """True (and the next purge scheduled) if one is due at ``now``."""
        if self._next is not None and now < self._next:
            return False
        self._next = now + REPLAY_PURGE_INTERVAL
        return True
