"""The message journal on SQLAlchemy Core (async): SQLite embedded, PostgreSQL in production.

How the guarantees of :mod:`gateway.store.base` are kept, identically on both:

* ``accept`` inserts the message and its first transition in one transaction; the
  primary key on ``message_id`` settles a race between two identical submissions
  (the loser re-reads and reports ``DUPLICATE`` or ``MessageAlreadySent``).
* ``transition`` reads (state, version), checks the move against the lifecycle
  table, then ``UPDATE ... WHERE version = <read version>``. Only one writer can
  match that version, on PostgreSQL (row lock, re-checked after the winner commits)
  and on SQLite (one writer at a time). Zero rows updated means someone else moved
  the message first: :class:`~gateway.store.base.TransitionConflict`.
* On SQLite the store additionally serializes its own operations with an asyncio
  lock: an in-memory database is a single shared connection, and a file database
  has one writer anyway. Several processes on one file still work (SQLite locks).
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from datetime import UTC, datetime
from types import TracebackType
from typing import Any, Self

from sqlalchemy import URL, ColumnElement, Row, and_, insert, or_, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from gateway.core.envelope import MessageKind
from gateway.core.errors import InvalidContent, MessageAlreadySent, NotFound
from gateway.core.lifecycle import MessageState, check_transition
from gateway.store.base import DEFAULT_PAGE_SIZE, MAX_PAGE_SIZE, TransitionConflict
from gateway.store.engine import create_engine
from gateway.store.migrate import upgrade
from gateway.store.paging import decode_cursor, encode_cursor
from gateway.store.records import (
    AcceptOutcome,
    AcceptResult,
    MessageRecord,
    NewMessage,
    Page,
    TransitionRecord,
    canonical_message_id,
    require_aware,
    require_name,
)
from gateway.store.schema import messages, transitions


class SqlStore:
    """The :class:`~gateway.store.base.Store` on an async SQLAlchemy engine."""

    def __init__(self, engine: AsyncEngine) -> None:
        self._engine = engine
        self._lock = asyncio.Lock() if engine.dialect.name == "sqlite" else None

    @classmethod
    def from_url(cls, url: str | URL, *, schema: str | None = None) -> SqlStore:
        """A store on ``url`` (``sqlite:///smevbus.db``, ``postgresql://...``); not migrated."""
        return cls(create_engine(url, schema=schema))

    @property
    def engine(self) -> AsyncEngine:
        return self._engine

    async def migrate(self) -> None:
        async with self._serialized():
            await upgrade(self._engine)

    async def close(self) -> None:
        await self._engine.dispose()

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.close()

    async def accept(
        self,
        message: NewMessage,
        *,
        at: datetime,
        reason: str | None = None,
        actor: str | None = None,
    ) -> AcceptResult:
        require_aware("at", at)
        require_name("actor", actor)
        async with self._serialized():
            existing = await self._get_or_none(message.message_id)
            if existing is None:
                try:
                    return AcceptResult(
                        AcceptOutcome.ACCEPTED, await self._insert(message, at, reason, actor)
                    )
                except IntegrityError:
                    # A concurrent submission of the same MessageID won the insert.
                    existing = await self._get_or_none(message.message_id)
                    if existing is None:
                        raise
        if existing.content_sha256 != message.content_sha256:
            raise MessageAlreadySent(
                f"message {message.message_id} was already sent with different content",
                message_id=message.message_id,
            )
        return AcceptResult(AcceptOutcome.DUPLICATE, existing)

    async def transition(
        self,
        message_id: str,
        to_state: MessageState,
        *,
        at: datetime,
        reason: str | None = None,
        actor: str | None = None,
        expected_version: int | None = None,
    ) -> MessageRecord:
        require_aware("at", at)
        require_name("actor", actor)
        message_id = _lookup_id(message_id)
        target = MessageState(to_state)
        async with self._serialized(), self._engine.begin() as conn:
            current = (
                await conn.execute(
                    select(messages.c.state, messages.c.version).where(
                        messages.c.message_id == message_id
                    )
                )
            ).one_or_none()
            if current is None:
                raise _not_found(message_id)
            state, version = MessageState(current.state), int(current.version)
            if expected_version is not None and version != expected_version:
                raise _conflict(message_id, state, target, version)
            check_transition(state, target)
            row = (
                await conn.execute(
                    update(messages)
                    .where(messages.c.message_id == message_id, messages.c.version == version)
                    .values(state=target.value, version=version + 1, updated_at=at)
                    .returning(*messages.c)
                )
            ).one_or_none()
            if row is None:
                raise _conflict(message_id, state, target, version)
            await _record_transition(conn, message_id, state, target, at, reason, actor)
            return _message(row)

    async def get(self, message_id: str) -> MessageRecord:
        message_id = _lookup_id(message_id)
        async with self._serialized():
            record = await self._get_or_none(message_id)
        if record is None:
            raise _not_found(message_id)
        return record

    async def history(self, message_id: str) -> list[TransitionRecord]:
        message_id = _lookup_id(message_id)
        query = (
            select(transitions)
            .where(transitions.c.message_id == message_id)
            .order_by(transitions.c.id)
        )
        async with self._serialized(), self._engine.connect() as conn:
            rows = (await conn.execute(query)).all()
        if not rows:  # accept writes the first transition with the message, atomically
            raise _not_found(message_id)
        return [_transition(row) for row in rows]

    async def find(
        self,
        *,
        sender: str | None = None,
        recipient: str | None = None,
        state: MessageState | None = None,
        since: datetime | None = None,
        limit: int = DEFAULT_PAGE_SIZE,
        after: str | None = None,
    ) -> Page:
        if not 1 <= limit <= MAX_PAGE_SIZE:
            raise ValueError(f"limit must be 1..{MAX_PAGE_SIZE}, got {limit}")
        require_aware("since", since)
        conditions: list[ColumnElement[bool]] = []
        if sender is not None:
            conditions.append(messages.c.sender == sender)
        if recipient is not None:
            conditions.append(messages.c.recipient == recipient)
        if state is not None:
            conditions.append(messages.c.state == MessageState(state).value)
        if since is not None:
            conditions.append(messages.c.created_at >= since)
        if after is not None:
            last_at, last_id = decode_cursor(after)
            conditions.append(
                or_(
                    messages.c.created_at > last_at,
                    and_(messages.c.created_at == last_at, messages.c.message_id > last_id),
                )
            )
        query = (
            select(messages)
            .where(*conditions)
            .order_by(messages.c.created_at, messages.c.message_id)
            .limit(limit + 1)
        )
        rows = await self._select_messages(query)
        items = tuple(rows[:limit])
        more = len(rows) > limit
        cursor = encode_cursor(items[-1].created_at, items[-1].message_id) if more else None
        return Page(items=items, next_cursor=cursor)

    async def responses_to(self, request_id: str) -> list[MessageRecord]:
        try:
            request_id = canonical_message_id(request_id)
        except InvalidContent:
            return []
        query = (
            select(messages)
            .where(messages.c.in_reply_to == request_id)
            .order_by(messages.c.created_at, messages.c.message_id)
        )
        return await self._select_messages(query)

    @asynccontextmanager
    async def _serialized(self) -> AsyncIterator[None]:
        if self._lock is None:
            yield
            return
        async with self._lock:
            yield

    async def _select_messages(self, query: Any) -> list[MessageRecord]:
        async with self._serialized(), self._engine.connect() as conn:
            rows: Sequence[Row[Any]] = (await conn.execute(query)).all()
        return [_message(row) for row in rows]

    async def _get_or_none(self, message_id: str) -> MessageRecord | None:
        query = select(messages).where(messages.c.message_id == message_id)
        async with self._engine.connect() as conn:
            row = (await conn.execute(query)).one_or_none()
        return None if row is None else _message(row)

    async def _insert(
        self, message: NewMessage, at: datetime, reason: str | None, actor: str | None
    ) -> MessageRecord:
        record = MessageRecord(
            message_id=message.message_id,
            kind=message.kind,
            sender=message.sender,
            recipient=message.recipient,
            message_type=message.message_type,
            in_reply_to=message.in_reply_to,
            content_sha256=message.content_sha256,
            xml=message.xml,
            state=MessageState.ACCEPTED,
            created_at=at.astimezone(UTC),
            updated_at=at.astimezone(UTC),
            expires_at=None if message.expires_at is None else message.expires_at.astimezone(UTC),
            test_message=message.test_message,
            version=1,
        )
        values = {column.name: getattr(record, column.name) for column in messages.c}
        values["kind"] = record.kind.value
        values["state"] = record.state.value
        async with self._engine.begin() as conn:
            await conn.execute(insert(messages).values(**values))
            await _record_transition(conn, record.message_id, None, record.state, at, reason, actor)
        return record


async def _record_transition(
    conn: AsyncConnection,
    message_id: str,
    from_state: MessageState | None,
    to_state: MessageState,
    at: datetime,
    reason: str | None,
    actor: str | None,
) -> None:
    await conn.execute(
        insert(transitions).values(
            message_id=message_id,
            from_state=None if from_state is None else from_state.value,
            to_state=to_state.value,
            at=at,
            reason=reason,
            actor=actor,
        )
    )


def _lookup_id(message_id: str) -> str:
    """The canonical id to look up; something that is not a UUID cannot be journaled."""
    try:
        return canonical_message_id(message_id)
    except InvalidContent:
        raise _not_found(message_id) from None


def _not_found(message_id: str) -> NotFound:
    return NotFound(f"no message {message_id} in the journal", message_id=message_id)


def _conflict(
    message_id: str, state: MessageState, target: MessageState, version: int
) -> TransitionConflict:
    return TransitionConflict(
        f"message {message_id} was moved by another writer while going {state} -> {target}",
        message_id=message_id,
        current=str(state),
        target=str(target),
        version=version,
    )


def _message(row: Row[Any]) -> MessageRecord:
    m = row._mapping
    return MessageRecord(
        message_id=m["message_id"],
        kind=MessageKind(m["kind"]),
        sender=m["sender"],
        recipient=m["recipient"],
        message_type=m["message_type"],
        in_reply_to=m["in_reply_to"],
        content_sha256=m["content_sha256"],
        xml=bytes(m["xml"]),
        state=MessageState(m["state"]),
        created_at=m["created_at"],
        updated_at=m["updated_at"],
        expires_at=m["expires_at"],
        test_message=bool(m["test_message"]),
        version=int(m["version"]),
    )


def _transition(row: Row[Any]) -> TransitionRecord:
    m = row._mapping
    return TransitionRecord(
        id=int(m["id"]),
        message_id=m["message_id"],
        from_state=None if m["from_state"] is None else MessageState(m["from_state"]),
        to_state=MessageState(m["to_state"]),
        at=m["at"],
        reason=m["reason"],
        actor=m["actor"],
    )
