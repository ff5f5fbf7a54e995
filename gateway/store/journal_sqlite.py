"""The message journal on SQLite (aiosqlite): the embedded default and the demo's.

The same guarantees as on PostgreSQL (:mod:`gateway.store.journal_pg`), kept by
SQLite's single writer: every write is one ``BEGIN IMMEDIATE`` transaction of a few
statements (SQLite has no data-modifying CTEs; a local transaction costs no round
trips), and the database's lock serializes this process's operations. ``take_reply``
saves the service request in the same transaction as the response's moves.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime

import aiosqlite

from gateway.core.lifecycle import MessageState
from gateway.store.journal_flow import JournalFlow
from gateway.store.journal_rules import (
    Step,
    accepted_record,
    conflict,
    duplicate_or_refusal,
    not_found,
    reply_path,
)
from gateway.store.records import (
    AcceptOutcome,
    AcceptResult,
    Acknowledged,
    MessageRecord,
    NewMessage,
)
from gateway.store.replies import AlongReply, ReplyOutcome, ReplySave, ReplyTaken
from gateway.store.requests_sqlite import SqliteServiceRequests
from gateway.store.rows import (
    MESSAGE_HEAD,
    message_of,
    service_request_of,
    sqlite_time,
    sqlite_time_or_none,
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
_ADVANCE = f"""
UPDATE messages
SET state = ?, version = version + ?, updated_at = ?, answered_by = coalesce(?, answered_by)
WHERE message_id = ?
RETURNING {MESSAGE_HEAD}
"""


class SqliteJournal(JournalFlow[aiosqlite.Connection]):
    """The :class:`~gateway.store.base.Journal` on a :class:`SqliteDatabase`."""

    REQUEST_FOR_ANSWER = f"""
SELECT {MESSAGE_HEAD}, answered_by FROM messages WHERE message_id = $1 AND kind = 'request'
"""

    database: SqliteDatabase

    def __init__(self, database: SqliteDatabase) -> None:
        self._lite_requests = SqliteServiceRequests(database)
        super().__init__(database, self._lite_requests)

    async def _accept(
        self,
        connection: aiosqlite.Connection,
        message: NewMessage,
        at: datetime,
        reason: str | None,
        actor: str | None,
    ) -> AcceptResult:
        record = accepted_record(message, at)
        when = sqlite_time(record.created_at)
        one = self.database.fetch_one
        added = await one(
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
        row = await one(connection, _HEAD, record.message_id)
        if row is None:  # pragma: no cover - the insert found it; this transaction holds it
            raise not_found(record.message_id)
        return duplicate_or_refusal(message, row)

    async def _move(
        self,
        connection: aiosqlite.Connection,
        message_id: str,
        step: Step,
        version: int | None,
        at: datetime,
        actor: str | None,
    ) -> MessageRecord:
        moved = await self._try_move(connection, message_id, step, version, at, actor)
        if moved is None:
            found = await self._head(connection, message_id)
            if found is None:
                raise not_found(message_id)
            raise conflict(message_id, step.from_state, step.to_state, version, found)
        return moved

    async def _try_move(
        self,
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
        row = await self.database.fetch_one(
            connection, _MOVE, step.to_state.value, when, message_id, step.from_state.value, version
        )
        if row is None:
            return None
        await connection.execute(
            _HISTORY,
            (message_id, step.from_state.value, step.to_state.value, when, step.reason, actor),
        )
        return message_of(row)

    async def _deliver(
        self,
        message_id: str,
        at: datetime,
        reason: str | None,
        queued_reason: str | None,
        actor: str | None,
    ) -> MessageRecord:
        to_deliver = Step(MessageState.QUEUED, MessageState.DELIVERED, reason)
        async with self.database.writing() as connection:
            moved = await self._try_move(connection, message_id, to_deliver, None, at, actor)
            if moved is not None:
                return moved
            found = await self._head(connection, message_id)
            if found is None:
                raise not_found(message_id)
            if found.state is MessageState.ACCEPTED:
                to_queue = Step(MessageState.ACCEPTED, MessageState.QUEUED, queued_reason)
                await self._try_move(connection, message_id, to_queue, found.version, at, actor)
                moved = await self._try_move(connection, message_id, to_deliver, None, at, actor)
                assert moved is not None  # this transaction holds SQLite's one writer
                return moved
        raise conflict(message_id, MessageState.QUEUED, MessageState.DELIVERED, None, found)

    async def _acknowledge(
        self, message_id: str, at: datetime, reason: str | None, actor: str | None
    ) -> Acknowledged:
        step = Step(MessageState.DELIVERED, MessageState.ACKED, reason)
        async with self.database.writing() as connection:
            moved = await self._try_move(connection, message_id, step, None, at, actor)
            if moved is None:
                found = await self._head(connection, message_id)
                if found is None:
                    raise not_found(message_id)
                return Acknowledged(found, False)
            await self._settle_request(connection, moved, at, actor)
        return Acknowledged(moved, True)

    async def _settle_request(
        self,
        connection: aiosqlite.Connection,
        acked: MessageRecord,
        at: datetime,
        actor: str | None,
    ) -> None:
        """RESPONDED -> RESPONSE_DELIVERED for the request ``acked`` is the claimed final
        answer of (nothing otherwise)."""
        if acked.in_reply_to is None:
            return
        when = sqlite_time(at)
        settled = await self.database.fetch_one(
            connection, _SETTLE_REQUEST, when, acked.in_reply_to, acked.message_id
        )
        if settled is not None:
            await connection.execute(
                _HISTORY,
                (
                    acked.in_reply_to,
                    MessageState.RESPONDED.value,
                    MessageState.RESPONSE_DELIVERED.value,
                    when,
                    None,
                    actor,
                ),
            )

    async def _take_reply(
        self,
        message_id: str,
        save: ReplySave | None,
        at: datetime,
        reason: str | None,
        queued_reason: str | None,
        actor: str | None,
        along: Sequence[AlongReply],
    ) -> ReplyTaken:
        async with self.database.writing() as connection:
            found = await self._head(connection, message_id)
            if found is None:
                raise not_found(message_id)
            steps = reply_path(found.state, reason, queued_reason)
            if not steps:
                return ReplyTaken(ReplyOutcome.NOT_TAKEN, found)
            saved = None
            if save is not None:  # first: a refused save has written nothing
                saved_row = await self._lite_requests.save_in(
                    connection, save.state, save.expected_version, at, save.claim_callback_until
                )
                if saved_row is None:
                    return ReplyTaken(ReplyOutcome.CONFLICT, found)
                saved = service_request_of(saved_row)
            # This transaction holds SQLite's one writer: the response is still as found.
            moved = await self._move_reply(connection, message_id, steps, at, actor)
            taken_along = set()
            for other in along:
                other_found = await self._head(connection, other.message_id)
                if other_found is None:
                    continue
                other_steps = reply_path(other_found.state, other.reason, other.queued_reason)
                if other_steps:
                    await self._move_reply(connection, other.message_id, other_steps, at, actor)
                    taken_along.add(other.message_id)
        return ReplyTaken(ReplyOutcome.TAKEN, moved, saved, frozenset(taken_along))

    async def _move_reply(
        self,
        connection: aiosqlite.Connection,
        message_id: str,
        steps: list[Step],
        at: datetime,
        actor: str | None,
    ) -> MessageRecord:
        """A response taken: moved along ``steps`` to ACKED, its request settled."""
        moved = await self._advance_as(
            connection, message_id, steps, MessageState.ACKED, at, None, actor
        )
        await self._settle_request(connection, moved, at, actor)
        return moved

    async def _head(
        self, connection: aiosqlite.Connection, message_id: str
    ) -> MessageRecord | None:
        row = await self.database.fetch_one(connection, _HEAD, message_id)
        return None if row is None else message_of(row)

    async def _advance(
        self,
        connection: aiosqlite.Connection,
        request_id: str,
        steps: list[Step],
        to_state: MessageState,
        at: datetime,
        answered_by: str | None,
    ) -> MessageRecord:
        return await self._advance_as(
            connection, request_id, steps, to_state, at, answered_by, "bus"
        )

    async def _advance_as(
        self,
        connection: aiosqlite.Connection,
        message_id: str,
        steps: list[Step],
        to_state: MessageState,
        at: datetime,
        answered_by: str | None,
        actor: str | None,
    ) -> MessageRecord:
        """The message (read by this transaction) moved along ``steps`` to
        ``to_state``, each step journaled as ``actor``'s."""
        when = sqlite_time(at)
        moved = await self.database.fetch_one(
            connection, _ADVANCE, to_state.value, len(steps), when, answered_by, message_id
        )
        assert moved is not None  # the row is ours: this transaction read it
        await connection.executemany(
            _HISTORY,
            [
                (message_id, s.from_state.value, s.to_state.value, when, s.reason, actor)
                for s in steps
            ],
        )
        return message_of(moved)
