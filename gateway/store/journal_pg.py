"""The message journal on PostgreSQL, on asyncpg directly.

How the guarantees of :mod:`gateway.store.base` are kept:

* every write is one statement (a data-modifying CTE writes the history row with
  the move) in autocommit, or one explicit transaction for ``answer``; a connection
  is leased per operation;
* ``accept`` inserts with ``ON CONFLICT DO NOTHING``; the primary key on
  ``message_id`` settles a race between two identical submissions;
* a conditional move (``expected_state``) is ``UPDATE ... WHERE state = $s [AND
  version = $v]``; when it matches nothing, the same statement returns the row as it
  was, so a refused move costs no second statement (and an unknown id is told from
  a moved one). Only one writer can match a version: PostgreSQL re-checks the
  condition on the row a concurrent winner committed;
* ``remember`` is one ``INSERT ... ON CONFLICT DO NOTHING RETURNING``; at most once
  per :data:`~gateway.store.journal_rules.REPLAY_PURGE_INTERVAL` a process also
  deletes the rows past ``expires_at``.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import datetime
from typing import Any

import asyncpg

from gateway.core.errors import InvalidContent, NotFound
from gateway.core.lifecycle import MessageState, check_transition
from gateway.store.base import Closing, PullWindow, ServiceRequests
from gateway.store.journal_rules import (
    Filters,
    ReplayPurge,
    accepted_record,
    answer_path,
    check_find,
    conflict,
    duplicate_or_refusal,
    lookup_id,
    not_found,
    page_of,
)
from gateway.store.pg import PgDatabase
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
from gateway.store.requests_pg import PgServiceRequests
from gateway.store.rows import MESSAGE_FULL, MESSAGE_HEAD, TRANSITION_COLUMNS, message_of
from gateway.store.rows import transition_of as _transition_of

_M_HEAD = ", ".join(f"m.{column}" for column in MESSAGE_HEAD.split(", "))
_HISTORY = "INSERT INTO transitions (message_id, from_state, to_state, at, reason, actor)"


def _accept_sql(*, rejection_code: bool) -> str:
    """$1 id, $2 kind, ... the message; $9 at; $12 reason, $13 actor; with
    ``rejection_code``, $14 a refusing response's code (written only when there is one,
    so a journal not yet migrated to 0006 takes every other message). One row always:
    ``added`` says whether this statement inserted; otherwise the columns are the row
    already there (NULL if a concurrent twin has not committed yet: read again)."""
    column, value = (", rejection_code", ", $14") if rejection_code else ("", "")
    return f"""
WITH added AS (
    INSERT INTO messages (message_id, kind, sender, recipient, message_type, in_reply_to,
        content_sha256, xml, state, created_at, updated_at, expires_at, test_message,
        version{column})
    VALUES ($1, $2, $3, $4, $5, $6, $7, $8, 'ACCEPTED', $9, $9, $10, $11, 1{value})
    ON CONFLICT (message_id) DO NOTHING
    RETURNING message_id
), logged AS (
    {_HISTORY} SELECT message_id, NULL, 'ACCEPTED', $9, $12, $13 FROM added
)
SELECT EXISTS (SELECT 1 FROM added) AS added, {_M_HEAD}
FROM (SELECT 1) AS one
LEFT JOIN messages AS m ON m.message_id = $1 AND NOT EXISTS (SELECT 1 FROM added)
"""


_ACCEPT = _accept_sql(rejection_code=False)
_ACCEPT_REJECTION = _accept_sql(rejection_code=True)

# $1 id, $2 from, $3 to, $4 version (NULL: any), $5 at, $6 reason, $7 actor.
_MOVE = f"""
WITH moved AS (
    UPDATE messages SET state = $3, version = version + 1, updated_at = $5
    WHERE message_id = $1 AND state = $2 AND version = coalesce($4::integer, version)
    RETURNING {MESSAGE_HEAD}
), logged AS (
    {_HISTORY} SELECT message_id, $2, $3, $5, $6, $7 FROM moved
)
SELECT true AS moved, {MESSAGE_HEAD} FROM moved
UNION ALL
SELECT false, {MESSAGE_HEAD} FROM messages
WHERE message_id = $1 AND NOT EXISTS (SELECT 1 FROM moved)
"""

# $1 id, $2 at, $3 reason, $4 actor. The response's Ack also settles its request when
# it is the request's claimed final answer.
_ACKNOWLEDGE = f"""
WITH moved AS (
    UPDATE messages SET state = 'ACKED', version = version + 1, updated_at = $2
    WHERE message_id = $1 AND state = 'DELIVERED'
    RETURNING {MESSAGE_HEAD}
), logged AS (
    {_HISTORY} SELECT message_id, 'DELIVERED', 'ACKED', $2, $3, $4 FROM moved
), settled AS (
    UPDATE messages AS r
    SET state = 'RESPONSE_DELIVERED', version = r.version + 1, updated_at = $2
    FROM moved
    WHERE moved.kind = 'response' AND r.message_id = moved.in_reply_to
        AND r.state = 'RESPONDED' AND r.answered_by = moved.message_id
    RETURNING r.message_id
), settled_logged AS (
    {_HISTORY} SELECT message_id, 'RESPONDED', 'RESPONSE_DELIVERED', $2, NULL, $4 FROM settled
)
SELECT true AS moved, {MESSAGE_HEAD} FROM moved
UNION ALL
SELECT false, {MESSAGE_HEAD} FROM messages
WHERE message_id = $1 AND NOT EXISTS (SELECT 1 FROM moved)
"""

_STATE = "SELECT state, version FROM messages WHERE message_id = $1"
_REQUEST_FOR_ANSWER = f"""
SELECT {MESSAGE_HEAD}, answered_by FROM messages
WHERE message_id = $1 AND kind = 'request' FOR UPDATE
"""
# $1 id, $2 to, $3 steps, $4 at, $5 answered_by (NULL: unchanged), $6 from states,
# $7 to states, $8 reasons, $9 actor: several moves of one message and their history.
_ADVANCE = f"""
WITH moved AS (
    UPDATE messages
    SET state = $2, version = version + $3, updated_at = $4,
        answered_by = coalesce($5, answered_by)
    WHERE message_id = $1
    RETURNING {MESSAGE_HEAD}
), logged AS (
    {_HISTORY}
    SELECT $1, step.from_state, step.to_state, $4, step.reason, $9
    FROM unnest($6::text[], $7::text[], $8::text[]) WITH ORDINALITY
        AS step(from_state, to_state, reason, n)
    WHERE EXISTS (SELECT 1 FROM moved)
    ORDER BY step.n
)
SELECT {MESSAGE_HEAD} FROM moved
"""
_CLAIM = """
UPDATE messages SET answered_by = $2
WHERE message_id = $1 AND kind = 'request' AND (answered_by IS NULL OR answered_by = $2)
RETURNING message_id
"""
_BY_ID = f"SELECT {MESSAGE_FULL} FROM messages WHERE message_id = $1"
_HISTORY_OF = f"SELECT {TRANSITION_COLUMNS} FROM transitions WHERE message_id = $1 ORDER BY id"
_RESPONSES_TO = (
    f"SELECT {MESSAGE_FULL} FROM messages WHERE in_reply_to = $1 ORDER BY created_at, message_id"
)
_REMEMBER = """
INSERT INTO replay_guard (digest, participant, expires_at) VALUES ($1, $2, $3)
ON CONFLICT (digest) DO NOTHING RETURNING digest
"""
_FORGET_EXPIRED = "DELETE FROM replay_guard WHERE expires_at < $1"


class PgJournal(Closing):
    """The :class:`~gateway.store.base.Journal` on a :class:`PgDatabase`."""

    def __init__(self, database: PgDatabase) -> None:
        self.database = database
        self._requests = PgServiceRequests(database)
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
        pool = await self.database.pool()
        async with pool.acquire() as connection:
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
        pool = await self.database.pool()
        async with pool.acquire() as connection:
            version: int | None
            if expected_state is not None:
                state, version = MessageState(expected_state), expected_version
            else:
                row = await connection.fetchrow(_STATE, message_id)
                if row is None:
                    raise not_found(message_id)
                state, version = MessageState(row["state"]), int(row["version"])
                if expected_version is not None and version != expected_version:
                    raise conflict(message_id, state, target, version)
            check_transition(state, target)
            return await _move(connection, message_id, state, target, version, at, reason, actor)

    async def acknowledge(
        self, message_id: str, *, at: datetime, reason: str | None = None, actor: str | None = None
    ) -> Acknowledged:
        require_aware("at", at)
        require_name("actor", actor)
        message_id = lookup_id(message_id)
        pool = await self.database.pool()
        row = await pool.fetchrow(_ACKNOWLEDGE, message_id, at, reason, actor)
        if row is None:
            raise not_found(message_id)
        return Acknowledged(message_of(row), bool(row["moved"]))

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
        pool = await self.database.pool()
        async with pool.acquire() as connection, connection.transaction():
            row = await connection.fetchrow(_REQUEST_FOR_ANSWER, request_id)
            if row is None:
                raise not_found(request_id)
            request = message_of(row)
            claimed = row["answered_by"]
            if final and claimed not in (None, response.message_id):
                return Answered(None, request)
            result = await _accept(connection, response, at, None, actor)
            steps = answer_path(request.state, final, response.message_id)
            if steps or (final and claimed is None):
                moved = await connection.fetchrow(
                    _ADVANCE,
                    request_id,
                    steps[-1].to_state.value if steps else request.state.value,
                    len(steps),
                    at,
                    response.message_id if final else None,
                    [s.from_state.value for s in steps],
                    [s.to_state.value for s in steps],
                    [s.reason for s in steps],
                    "bus",
                )
                request = message_of(moved)
        return Answered(result, request)

    async def claim_answer(self, request_id: str, response_id: str) -> bool:
        try:
            request_id = lookup_id(request_id)
        except NotFound:
            return False
        response_id = canonical_message_id(response_id)
        pool = await self.database.pool()
        return await pool.fetchrow(_CLAIM, request_id, response_id) is not None

    async def get(self, message_id: str) -> MessageRecord:
        message_id = lookup_id(message_id)
        pool = await self.database.pool()
        row = await pool.fetchrow(_BY_ID, message_id)
        if row is None:
            raise not_found(message_id)
        return message_of(row)

    async def history(self, message_id: str) -> list[TransitionRecord]:
        message_id = lookup_id(message_id)
        pool = await self.database.pool()
        rows = await pool.fetch(_HISTORY_OF, message_id)
        if not rows:  # accept writes the first transition with the message, atomically
            raise not_found(message_id)
        return [_transition_of(row) for row in rows]

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
        filters = Filters(lambda n: f"${n}")
        filters.equal("sender", sender)
        filters.equal("recipient", recipient)
        filters.equal("state", None if state is None else MessageState(state).value)
        filters.at_least("created_at", since)
        filters.after("created_at", "message_id", after)
        sql = (
            f"SELECT {MESSAGE_FULL} FROM messages {filters.where()} "
            f"ORDER BY created_at, message_id LIMIT {filters.param(limit + 1)}"
        )
        pool = await self.database.pool()
        rows = await pool.fetch(sql, *filters.values)
        return page_of([message_of(row) for row in rows], limit)

    async def responses_to(self, request_id: str) -> list[MessageRecord]:
        try:
            request_id = canonical_message_id(request_id)
        except InvalidContent:
            return []
        pool = await self.database.pool()
        return [message_of(row) for row in await pool.fetch(_RESPONSES_TO, request_id)]

    async def remember(
        self, digest: str, participant: str, *, expires_at: datetime, now: datetime
    ) -> bool:
        require_name("participant", participant)
        require_aware("expires_at", expires_at)
        require_aware("now", now)
        pool = await self.database.pool()
        async with pool.acquire() as connection:
            return await self._remember(connection, digest, participant, expires_at, now)

    @asynccontextmanager
    async def pull(
        self, digest: str, participant: str, *, expires_at: datetime, now: datetime
    ) -> AsyncIterator[PullWindow]:
        require_name("participant", participant)
        require_aware("expires_at", expires_at)
        require_aware("now", now)
        pool = await self.database.pool()
        async with pool.acquire() as connection, connection.transaction():
            first = await self._remember(connection, digest, participant, expires_at, now)
            yield _PgPullWindow(connection, first)

    async def _remember(
        self,
        connection: asyncpg.Connection,
        digest: str,
        participant: str,
        expires_at: datetime,
        now: datetime,
    ) -> bool:
        if self._purge.due(now):
            await connection.execute(_FORGET_EXPIRED, now)
        return await connection.fetchrow(_REMEMBER, digest, participant, expires_at) is not None


class _PgPullWindow:
    def __init__(self, connection: asyncpg.Connection, first: bool) -> None:
        self._connection = connection
        self.first = first

    async def deliver(
        self, message_id: str, *, at: datetime, reason: str | None, actor: str | None
    ) -> MessageRecord:
        require_aware("at", at)
        require_name("actor", actor)
        return await _move(
            self._connection,
            lookup_id(message_id),
            MessageState.QUEUED,
            MessageState.DELIVERED,
            None,
            at,
            reason,
            actor,
        )


async def _move(
    connection: asyncpg.Connection,
    message_id: str,
    state: MessageState,
    target: MessageState,
    version: int | None,
    at: datetime,
    reason: str | None,
    actor: str | None,
) -> MessageRecord:
    """One conditional move and its history row, in one statement."""
    row = await connection.fetchrow(
        _MOVE, message_id, state.value, target.value, version, at, reason, actor
    )
    if row is None:
        raise not_found(message_id)
    if not row["moved"]:
        raise conflict(message_id, state, target, version)
    return message_of(row)


async def _accept(
    connection: asyncpg.Connection,
    message: NewMessage,
    at: datetime,
    reason: str | None,
    actor: str | None,
) -> AcceptResult:
    record = accepted_record(message, at)
    params: list[Any] = [
        record.message_id,
        record.kind.value,
        record.sender,
        record.recipient,
        record.message_type,
        record.in_reply_to,
        record.content_sha256,
        message.xml,
        record.created_at,
        record.expires_at,
        record.test_message,
        reason,
        actor,
    ]
    if message.rejection_code is None:
        row = await connection.fetchrow(_ACCEPT, *params)
    else:
        row = await connection.fetchrow(_ACCEPT_REJECTION, *params, message.rejection_code)
    if row["added"]:
        return AcceptResult(AcceptOutcome.ACCEPTED, record)
    if row["state"] is None:  # a concurrent twin committed after this statement began
        row = await connection.fetchrow(_BY_ID, record.message_id)
        if row is None:
            raise not_found(record.message_id)
    return duplicate_or_refusal(message, row)
