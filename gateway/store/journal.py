"""The message journal on SQLAlchemy Core (async): SQLite embedded, PostgreSQL in production.

How the guarantees of :mod:`gateway.store.base` are kept, identically on both:

* ``accept`` inserts the message and its first transition atomically; the primary
  key on ``message_id`` settles a race between two identical submissions (the loser
  re-reads and reports ``DUPLICATE`` or ``MessageAlreadySent``).
* ``transition`` reads (state, version) — or takes them from the caller, who read the
  message just before — checks the move against the lifecycle table, then
  ``UPDATE ... WHERE version = <read version> AND state = <read state>`` and writes
  the history row atomically with it. Only one writer can match that version, on
  PostgreSQL (row lock, re-checked after the winner commits) and on SQLite (one
  writer at a time). Zero rows updated means someone else moved the message first:
  :class:`~gateway.store.base.TransitionConflict`.
* Round trips matter on PostgreSQL (the journal is most of the bus's work): each
  write is one statement (a data-modifying CTE writes the history row with it) in
  autocommit, so ``accept`` and a transition from a known state cost one round trip.
* ``remember`` (the pull replay guard) is one ``INSERT ... ON CONFLICT DO NOTHING
  RETURNING`` on ``replay_guard``'s primary key, on both databases; at most once per
  :data:`REPLAY_PURGE_INTERVAL` a process also deletes the rows past ``expires_at``.
* On SQLite the store additionally serializes its own operations with an asyncio
  lock: an in-memory database is a single shared connection, and a file database
  has one writer anyway. Several processes on one file still work (SQLite locks).
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from datetime import UTC, datetime, timedelta
from types import TracebackType
from typing import Any, Self

from sqlalchemy import (
    URL,
    ColumnElement,
    Insert,
    Integer,
    Row,
    String,
    Text,
    and_,
    bindparam,
    delete,
    func,
    insert,
    or_,
    select,
    update,
)
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncEngine

from gateway.core.envelope import MessageKind
from gateway.core.errors import InvalidContent, MessageAlreadySent, NotFound
from gateway.core.lifecycle import MessageState, check_transition
from gateway.store.base import DEFAULT_PAGE_SIZE, MAX_PAGE_SIZE, TransitionConflict
from gateway.store.engine import autocommit, create_engine
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
from gateway.store.schema import UtcDateTime, messages, replay_guard, transitions

#: How often a process deletes the replay guard's expired rows (judged by the ``now``
#: handed to ``remember``).
REPLAY_PURGE_INTERVAL = timedelta(minutes=1)


class SqlStore:
    """The :class:`~gateway.store.base.Store` on an async SQLAlchemy engine."""

    def __init__(self, engine: AsyncEngine) -> None:
        self._engine = engine
        self._pg = engine.dialect.name == "postgresql"
        self._lock = None if self._pg else asyncio.Lock()
        # On PostgreSQL every operation is a single statement (a write and its history
        # row in one, through a data-modifying CTE).
        self._autocommit = autocommit(engine)
        self._remember = _REMEMBER_PG if self._pg else _REMEMBER_SQLITE
        self._next_purge: datetime | None = None

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
            try:
                return AcceptResult(
                    AcceptOutcome.ACCEPTED, await self._insert(message, at, reason, actor)
                )
            except IntegrityError:
                # The MessageID is journaled: a resubmission, or a concurrent twin won.
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
        expected_state: MessageState | None = None,
    ) -> MessageRecord:
        require_aware("at", at)
        require_name("actor", actor)
        message_id = _lookup_id(message_id)
        target = MessageState(to_state)
        version: int | None
        async with self._serialized():
            if expected_state is not None:
                state, version = MessageState(expected_state), expected_version
            else:
                state, version = await self._state_of(message_id)
                if expected_version is not None and version != expected_version:
                    raise _conflict(message_id, state, target, version)
            check_transition(state, target)
            move = _move_params(message_id, state, target, version, at, reason, actor)
            row = await (self._move_pg(move) if self._pg else self._move_sqlite(move))
            if row is None:
                if expected_state is not None:
                    await self._state_of(message_id)  # NotFound for an unknown id
                raise _conflict(message_id, state, target, version)
            return _message(row)

    async def claim_answer(self, request_id: str, response_id: str) -> bool:
        try:
            request_id = _lookup_id(request_id)
        except NotFound:
            return False
        response_id = canonical_message_id(response_id)
        # begin(): SQLite commits; in autocommit on PostgreSQL it adds no round trip.
        async with self._serialized(), self._autocommit.begin() as conn:
            row = (
                await conn.execute(
                    _CLAIM_ANSWER, {"request_id": request_id, "response_id": response_id}
                )
            ).one_or_none()
        return row is not None

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

    async def remember(
        self, digest: str, participant: str, *, expires_at: datetime, now: datetime
    ) -> bool:
        require_name("participant", participant)
        require_aware("expires_at", expires_at)
        require_aware("now", now)
        async with self._serialized(), self._autocommit.begin() as conn:
            if self._next_purge is None or now >= self._next_purge:
                self._next_purge = now + REPLAY_PURGE_INTERVAL
                await conn.execute(_FORGET_EXPIRED, {"now": now})
            row = (
                await conn.execute(
                    self._remember,
                    {"digest": digest, "participant": participant, "expires_at": expires_at},
                )
            ).one_or_none()
        return row is not None

    @asynccontextmanager
    async def _serialized(self) -> AsyncIterator[None]:
        if self._lock is None:
            yield
            return
        async with self._lock:
            yield

    async def _select_messages(self, query: Any) -> list[MessageRecord]:
        async with self._serialized(), self._autocommit.connect() as conn:
            rows: Sequence[Row[Any]] = (await conn.execute(query)).all()
        return [_message(row) for row in rows]

    async def _get_or_none(self, message_id: str) -> MessageRecord | None:
        async with self._autocommit.connect() as conn:
            row = (await conn.execute(_BY_ID, {"id": message_id})).one_or_none()
        return None if row is None else _message(row)

    async def _state_of(self, message_id: str) -> tuple[MessageState, int]:
        async with self._autocommit.connect() as conn:
            row = (await conn.execute(_STATE_BY_ID, {"id": message_id})).one_or_none()
        if row is None:
            raise _not_found(message_id)
        return MessageState(row.state), int(row.version)

    async def _move_pg(self, move: dict[str, Any]) -> Row[Any] | None:
        async with self._autocommit.connect() as conn:
            return (await conn.execute(_MOVE_LOGGED, move)).one_or_none()

    async def _move_sqlite(self, move: dict[str, Any]) -> Row[Any] | None:
        # SQLite has no data-modifying CTEs; a local transaction costs no round trips.
        async with self._engine.begin() as conn:
            row = (await conn.execute(_MOVE, move)).one_or_none()
            if row is not None:
                await conn.execute(_HISTORY_ROW, move)
            return row

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
        values = {f"a_{c.name}": getattr(record, c.name) for c in _ACCEPTED_COLUMNS}
        values["a_kind"] = record.kind.value
        values["a_state"] = record.state.value
        accept, accept_logged = _ACCEPT, _ACCEPT_LOGGED
        if message.rejection_code is not None:
            values["a_rejection_code"] = message.rejection_code
            accept, accept_logged = _ACCEPT_REJECTION, _ACCEPT_REJECTION_LOGGED
        first = _move_params(record.message_id, None, record.state, 0, at, reason, actor)
        if self._pg:
            async with self._autocommit.connect() as conn:
                await conn.execute(accept_logged, values | first)
            return record
        async with self._engine.begin() as conn:
            await conn.execute(accept, values)
            await conn.execute(_HISTORY_ROW, first)
        return record


def _move_params(
    message_id: str,
    state: MessageState | None,
    target: MessageState,
    version: int | None,
    at: datetime,
    reason: str | None,
    actor: str | None,
) -> dict[str, Any]:
    return {
        "m_id": message_id,
        "m_state": None if state is None else state.value,
        "m_target": target.value,
        "m_version": version,
        "m_at": at,
        "m_reason": reason,
        "m_actor": actor,
    }


_BY_ID = select(messages).where(messages.c.message_id == bindparam("id"))
_STATE_BY_ID = select(messages.c.state, messages.c.version).where(
    messages.c.message_id == bindparam("id")
)

# The journal's writes, built once (their SQL is compiled once and cached). A move is
# a compare-and-set on the state (and the version, unless it is NULL) plus its history
# row.
_HISTORY_COLUMNS = ["message_id", "from_state", "to_state", "at", "reason", "actor"]
_HISTORY_VALUES = [
    bindparam("m_state", type_=String()),
    bindparam("m_target", type_=String()),
    bindparam("m_at", type_=UtcDateTime()),
    bindparam("m_reason", type_=Text()),
    bindparam("m_actor", type_=String()),
]
_MOVE = (
    update(messages)
    .where(
        messages.c.message_id == bindparam("m_id"),
        messages.c.state == bindparam("m_state"),
        messages.c.version
        == func.coalesce(bindparam("m_version", type_=Integer()), messages.c.version),
    )
    .values(
        state=bindparam("m_target"),
        version=messages.c.version + 1,
        updated_at=bindparam("m_at"),
    )
    .returning(*messages.c)
)
_HISTORY_ROW = insert(transitions).values(
    dict(zip(_HISTORY_COLUMNS, [bindparam("m_id", type_=String()), *_HISTORY_VALUES], strict=True))
)
# The columns a MessageRecord holds. rejection_code (a refusing response's) is written
# only when there is one, so that journals not yet migrated to 0006 take the rest.
_ACCEPTED_COLUMNS = [c for c in messages.c if c.name not in ("answered_by", "rejection_code")]
_ACCEPT = insert(messages).values(
    {c.name: bindparam(f"a_{c.name}", type_=c.type) for c in _ACCEPTED_COLUMNS}
)
_ACCEPT_REJECTION = _ACCEPT.values(
    rejection_code=bindparam("a_rejection_code", type_=messages.c.rejection_code.type)
)
_CLAIM_ANSWER = (
    update(messages)
    .where(
        messages.c.message_id == bindparam("request_id"),
        messages.c.kind == MessageKind.REQUEST.value,
        or_(
            messages.c.answered_by.is_(None),
            messages.c.answered_by == bindparam("response_id"),
        ),
    )
    .values(answered_by=bindparam("response_id"))
    .returning(messages.c.message_id)
)

# The replay guard: ``INSERT ... ON CONFLICT (digest) DO NOTHING RETURNING digest`` (a
# row back means the digest is new), the same SQL on both databases from each
# dialect's own ``insert``; and the purge of what expired.
_REMEMBER_PG, _REMEMBER_SQLITE = (
    dialect.insert(replay_guard)
    .values(
        digest=bindparam("digest", type_=String()),
        participant=bindparam("participant", type_=String()),
        expires_at=bindparam("expires_at", type_=UtcDateTime()),
    )
    .on_conflict_do_nothing(index_elements=[replay_guard.c.digest])
    .returning(replay_guard.c.digest)
    for dialect in (postgresql, sqlite)
)
_FORGET_EXPIRED = delete(replay_guard).where(
    replay_guard.c.expires_at < bindparam("now", type_=UtcDateTime())
)


# On PostgreSQL the write and its history row go as one statement: the write in a
# data-modifying CTE, the history row inserted from what it returned.
_moved = _MOVE.cte("moved")
_MOVE_LOGGED = select(_moved).add_cte(
    insert(transitions)
    .from_select(_HISTORY_COLUMNS, select(_moved.c.message_id, *_HISTORY_VALUES))
    .cte("logged")
)


def _logged(accept: Insert) -> Insert:
    """``accept`` and the first transition row in one statement (PostgreSQL)."""
    added = accept.returning(messages.c.message_id).cte("added")
    return (
        insert(transitions)
        .from_select(_HISTORY_COLUMNS, select(added.c.message_id, *_HISTORY_VALUES))
        .add_cte(added)
    )


_ACCEPT_LOGGED = _logged(_ACCEPT)
_ACCEPT_REJECTION_LOGGED = _logged(_ACCEPT_REJECTION)


def _lookup_id(message_id: str) -> str:
    """The canonical id to look up; something that is not a UUID cannot be journaled."""
    try:
        return canonical_message_id(message_id)
    except InvalidContent:
        raise _not_found(message_id) from None


def _not_found(message_id: str) -> NotFound:
    return NotFound(f"no message {message_id} in the journal", message_id=message_id)


def _conflict(
    message_id: str, state: MessageState, target: MessageState, version: int | None
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
