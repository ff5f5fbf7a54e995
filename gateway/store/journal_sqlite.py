"""The message journal on SQLite (aiosqlite): the embedded default and the demo's.

The same guarantees as on PostgreSQL (:mod:`gateway.store.journal_pg`), kept by
SQLite's single writer: every write is one ``BEGIN IMMEDIATE`` transaction of a few
statements (SQLite has no data-modifying CTEs; a local transaction costs no round
trips), and the database's lock serializes this process's operations.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import datetime

import aiosqlite

from gateway.core.errors import InvalidContent, NotFound
from gateway.core.lifecycle import MessageState, check_transition
from gateway.store.base import Closing, PullWindow, ServiceRequests
from gateway.store.journal_rules import (
    Filters,
    ReplayPurge,
    Step,
    accepted_record,
    answer_path,
    check_find,
    conflict,
    duplicate_or_refusal,
    lookup_id,
    not_found,
    page_of,
)
from gateway.store.records import (
    DEFAULT_PAGE_SIZE,
    AcceptOutcome,
    AcceptResult,
    Acknowledged,
    Answered,
    MessageRecord,
    NewMessage,
    Page,
    TransitionRecord,
    canonical_message_id,
    require_aware,
    require_name,
)
from gateway.store.requests_sqlite import SqliteServiceRequests
from gateway.store.rows import (
    MESSAGE_FULL,
    MESSAGE_HEAD,
    TRANSITION_COLUMNS,
    Row,
    message_of,
    sqlite_time,
    sqlite_time_or_none,
    transition_of,
)
from gateway.store.sqlite import SqliteDatabase


def _insert_sql(*, rejection_code: bool) -> str:
    """The message's INSERT; with ``rejection_code``, a refusing response's code too
    (written only when there is one, so a journal not yet migrated to 0006 takes every
    other message)."""
    column, value = (", rejection_code", ", ?") if rejection_code else ("", "")
    return f"""
INSERT INTO messages (message_id, kind, sender, recipient, message_type, in_reply_to,
    content_sha256, xml, state, created_at, updated_at, expires_at, test_message, version{column})
VALUES (?, ?, ?, ?, ?, ?, ?, ?, 'ACCEPTED', ?, ?, ?, ?, 1{value})
ON CONFLICT (message_id) DO NOTHING
RETURNING message_id
"""


_INSERT = _insert_sql(rejection_code=False)
_INSERT_REJECTION = _insert_sql(rejection_code=True)
_HISTORY = """
INSERT INTO transitions (message_id, from_state, to_state, at, reason, actor)
VALUES (?, ?, ?, ?, ?, ?)
"""
_HEAD = f"SELECT {MESSAGE_HEAD} FROM messages WHERE message_id = ?"
_STATE = "SELECT state, version FROM messages WHERE message_id = ?"
_MOVE = f"""
UPDATE messages SET state = ?, version = version + 1, updated_at = ?
WHERE message_id = ? AND state = ? AND version = coalesce(?, version)
RETURNING {MESSAGE_HEAD}
"""
_SETTLE_REQUEST = """
UPDATE messages SET state = 'RESPONSE_DELIVERED', version = version + 1, updated_at = ?
WHERE message_id = ? AND state = 'RESPONDED' AND answered_by = ?
RETURNING message_id
"""
_REQUEST_FOR_ANSWER = (
    f"SELECT {MESSAGE_HEAD}, answered_by FROM messages WHERE message_id = ? AND kind = 'request'"
)
_ADVANCE = f"""
UPDATE messages
SET state = ?, version = version + ?, updated_at = ?, answered_by = coalesce(?, answered_by)
WHERE message_id = ?
RETURNING {MESSAGE_HEAD}
"""
_CLAIM = """
UPDATE messages SET answered_by = ?
WHERE message_id = ? AND kind = 'request' AND (answered_by IS NULL OR answered_by = ?)
RETURNING message_id
"""
_BY_ID = f"SELECT {MESSAGE_FULL} FROM messages WHERE message_id = ?"
_HISTORY_OF = f"SELECT {TRANSITION_COLUMNS} FROM transitions WHERE message_id = ? ORDER BY id"
_RESPONSES_TO = (
    f"SELECT {MESSAGE_FULL} FROM messages WHERE in_reply_to = ? ORDER BY created_at, message_id"
)
_REMEMBER = """
INSERT INTO replay_guard (digest, participant, expires_at) VALUES (?, ?, ?)
ON CONFLICT (digest) DO NOTHING RETURNING digest
"""
_FORGET_EXPIRED = "DELETE FROM replay_guard WHERE expires_at < ?"
_FORGET = "DELETE FROM replay_guard WHERE digest = ?"


class SqliteJournal(Closing):
    """The :class:`~gateway.store.base.Journal` on a :class:`SqliteDatabase`."""

    def __init__(self, database: SqliteDatabase) -> None:
        self.database = database
        self._requests = SqliteServiceRequests(database)
        self._purge = ReplayPurge()

    def service_requests(self) -> ServiceRequests:
        return self._requests

    async def migrate(self) -> None:
        await self.database.migrate()

    async def close(self) -> None:
        await self.database.close()

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
        async with self.database.writing() as connection:
            return await _accept(connection, message, at, reason, actor)

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
        message_id = lookup_id(message_id)
        target = MessageState(to_state)
        version: int | None
        async with self.database.writing() as connection:
            if expected_state is not None:
                state, version = MessageState(expected_state), expected_version
            else:
                row = await _one(connection, _STATE, message_id)
                if row is None:
                    raise not_found(message_id)
                state, version = MessageState(row["state"]), int(row["version"])
                if expected_version is not None and version != expected_version:
                    raise conflict(message_id, state, target, version)
            check_transition(state, target)
            step = Step(state, target, reason)
            moved = await _move(connection, message_id, step, version, at, actor)
            if moved is None:
                if await _one(connection, _STATE, message_id) is None:
                    raise not_found(message_id)
                raise conflict(message_id, state, target, version)
        return moved

    async def acknowledge(
        self, message_id: str, *, at: datetime, reason: str | None = None, actor: str | None = None
    ) -> Acknowledged:
        require_aware("at", at)
        require_name("actor", actor)
        message_id = lookup_id(message_id)
        step = Step(MessageState.DELIVERED, MessageState.ACKED, reason)
        async with self.database.writing() as connection:
            moved = await _move(connection, message_id, step, None, at, actor)
            if moved is None:
                row = await _one(connection, _HEAD, message_id)
                if row is None:
                    raise not_found(message_id)
                return Acknowledged(message_of(row), False)
            if moved.in_reply_to is not None:
                settled = await _one(
                    connection, _SETTLE_REQUEST, sqlite_time(at), moved.in_reply_to, message_id
                )
                if settled is not None:
                    await connection.execute(
                        _HISTORY,
                        (
                            moved.in_reply_to,
                            MessageState.RESPONDED.value,
                            MessageState.RESPONSE_DELIVERED.value,
                            sqlite_time(at),
                            None,
                            actor,
                        ),
                    )
        return Acknowledged(moved, True)

    async def answer(
        self,
        response: NewMessage,
        *,
        final: bool,
        at: datetime,
        actor: str | None = None,
    ) -> Answered:
        require_aware("at", at)
        require_name("actor", actor)
        request_id = response.in_reply_to
        if request_id is None:
            raise InvalidContent("an answer must name its request", message_id=response.message_id)
        async with self.database.writing() as connection:
            row = await _one(connection, _REQUEST_FOR_ANSWER, request_id)
            if row is None:
                raise not_found(request_id)
            request = message_of(row)
            claimed = row["answered_by"]
            if final and claimed not in (None, response.message_id):
                return Answered(None, request)
            result = await _accept(connection, response, at, None, actor)
            steps = answer_path(request.state, final, response.message_id)
            if steps or (final and claimed is None):
                when = sqlite_time(at)
                moved = await _one(
                    connection,
                    _ADVANCE,
                    steps[-1].to_state.value if steps else request.state.value,
                    len(steps),
                    when,
                    response.message_id if final else None,
                    request_id,
                )
                assert moved is not None  # the row is ours: this transaction read it
                await connection.executemany(
                    _HISTORY,
                    [
                        (request_id, s.from_state.value, s.to_state.value, when, s.reason, "bus")
                        for s in steps
                    ],
                )
                request = message_of(moved)
        return Answered(result, request)

    async def claim_answer(self, request_id: str, response_id: str) -> bool:
        try:
            request_id = lookup_id(request_id)
        except NotFound:
            return False
        response_id = canonical_message_id(response_id)
        async with self.database.writing() as connection:
            row = await _one(connection, _CLAIM, response_id, request_id, response_id)
        return row is not None

    async def get(self, message_id: str) -> MessageRecord:
        message_id = lookup_id(message_id)
        async with self.database.reading() as connection:
            row = await _one(connection, _BY_ID, message_id)
        if row is None:
            raise not_found(message_id)
        return message_of(row)

    async def history(self, message_id: str) -> list[TransitionRecord]:
        message_id = lookup_id(message_id)
        async with self.database.reading() as connection:
            rows = await connection.execute_fetchall(_HISTORY_OF, (message_id,))
        if not rows:  # accept writes the first transition with the message, atomically
            raise not_found(message_id)
        return [transition_of(row) for row in rows]  # type: ignore[arg-type]

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
        check_find(limit, since)
        filters = Filters(lambda _: "?", sqlite_time)
        filters.equal("sender", sender)
        filters.equal("recipient", recipient)
        filters.equal("state", None if state is None else MessageState(state).value)
        filters.at_least("created_at", since)
        filters.after("created_at", "message_id", after)
        sql = (
            f"SELECT {MESSAGE_FULL} FROM messages {filters.where()} "
            f"ORDER BY created_at, message_id LIMIT {filters.param(limit + 1)}"
        )
        async with self.database.reading() as connection:
            rows = await connection.execute_fetchall(sql, filters.values)
        return page_of([message_of(row) for row in rows], limit)  # type: ignore[arg-type]

    async def responses_to(self, request_id: str) -> list[MessageRecord]:
        try:
            request_id = canonical_message_id(request_id)
        except InvalidContent:
            return []
        async with self.database.reading() as connection:
            rows = await connection.execute_fetchall(_RESPONSES_TO, (request_id,))
        return [message_of(row) for row in rows]  # type: ignore[arg-type]

    async def remember(
        self, digest: str, participant: str, *, expires_at: datetime, now: datetime
    ) -> bool:
        require_name("participant", participant)
        require_aware("expires_at", expires_at)
        require_aware("now", now)
        async with self.database.writing() as connection:
            if self._purge.due(now):
                await connection.execute(_FORGET_EXPIRED, (sqlite_time(now),))
            row = await _one(connection, _REMEMBER, digest, participant, sqlite_time(expires_at))
        return row is not None

    @asynccontextmanager
    async def pull(
        self, digest: str, participant: str, *, expires_at: datetime, now: datetime
    ) -> AsyncIterator[PullWindow]:
        # Two transactions: holding SQLite's one writer while the broker answers would
        # stall every other journal operation. A failed block forgets the digest again,
        # as a rolled-back transaction would.
        first = await self.remember(digest, participant, expires_at=expires_at, now=now)
        try:
            yield _SqlitePullWindow(self, first)
        except BaseException:
            if first:
                async with self.database.writing() as connection:
                    await connection.execute(_FORGET, (digest,))
            raise


class _SqlitePullWindow:
    def __init__(self, journal: SqliteJournal, first: bool) -> None:
        self._journal = journal
        self.first = first

    async def deliver(
        self, message_id: str, *, at: datetime, reason: str | None, actor: str | None
    ) -> MessageRecord:
        return await self._journal.transition(
            message_id,
            MessageState.DELIVERED,
            at=at,
            reason=reason,
            actor=actor,
            expected_state=MessageState.QUEUED,
        )


async def _one(connection: aiosqlite.Connection, sql: str, *args: object) -> Row | None:
    cursor = await connection.execute(sql, args)
    try:
        row: Row | None = await cursor.fetchone()  # type: ignore[assignment]
    finally:
        await cursor.close()
    return row


async def _move(
    connection: aiosqlite.Connection,
    message_id: str,
    step: Step,
    version: int | None,
    at: datetime,
    actor: str | None,
) -> MessageRecord | None:
    """One conditional move and its history row; None if the message was not in
    ``step.from_state`` (at ``version``)."""
    when = sqlite_time(at)
    row = await _one(
        connection, _MOVE, step.to_state.value, when, message_id, step.from_state.value, version
    )
    if row is None:
        return None
    await connection.execute(
        _HISTORY,
        (message_id, step.from_state.value, step.to_state.value, when, step.reason, actor),
    )
    return message_of(row)


async def _accept(
    connection: aiosqlite.Connection,
    message: NewMessage,
    at: datetime,
    reason: str | None,
    actor: str | None,
) -> AcceptResult:
    record = accepted_record(message, at)
    when = sqlite_time(record.created_at)
    added = await _one(
        connection,
        _INSERT if message.rejection_code is None else _INSERT_REJECTION,
        record.message_id,
        record.kind.value,
        record.sender,
        record.recipient,
        record.message_type,
        record.in_reply_to,
        record.content_sha256,
        message.xml,
        when,
        when,
        sqlite_time_or_none(record.expires_at),
        int(record.test_message),
        *(() if message.rejection_code is None else (message.rejection_code,)),
    )
    if added is not None:
        await connection.execute(
            _HISTORY,
            (record.message_id, None, MessageState.ACCEPTED.value, when, reason, actor),
        )
        return AcceptResult(AcceptOutcome.ACCEPTED, record)
    row = await _one(connection, _HEAD, record.message_id)
    if row is None:  # pragma: no cover - the insert found it; this transaction holds it
        raise not_found(record.message_id)
    return duplicate_or_refusal(message, row)
