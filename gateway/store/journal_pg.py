"""The message journal on PostgreSQL, on asyncpg directly.

How the guarantees of :mod:`gateway.store.base` are kept:

* every write is one statement (a data-modifying CTE writes the history row with
  the move) in autocommit; a connection is leased per operation. ``answer`` is one
  statement when the request is as the router saw it (or further along its path),
  else one explicit transaction on the locked request. A signed pull's replay-guard
  row and its delivery are a statement each (:mod:`gateway.store.journal_pull`).
  ``take_reply``, which also saves a service request, is one statement too
  (:mod:`gateway.store.replies_pg`);
* a message is found by its key alone: ``kind IS NOT DISTINCT FROM 'request'``, not
  ``kind = 'request'``, which the planner may answer from ``ix_messages_kind_created_at``
  by reading every request (it did, in every answer, while a new journal had no
  statistics yet: 2.6 ms a statement and growing with the table);
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

from collections.abc import Sequence
from datetime import datetime
from typing import Any, NamedTuple

import asyncpg

from gateway.core.lifecycle import MessageState
from gateway.store.batching import Batcher
from gateway.store.journal_flow import JournalFlow
from gateway.store.journal_rules import (
    Step,
    accepted_record,
    conflict,
    duplicate_or_refusal,
    not_found,
)
from gateway.store.pg import PgDatabase
from gateway.store.pg_sql import HISTORY, M_HEAD, settle_request
from gateway.store.records import (
    AcceptOutcome,
    AcceptResult,
    Acknowledged,
    Answered,
    MessageRecord,
    NewMessage,
)
from gateway.store.replies import AlongReply, ReplySave, ReplyTaken
from gateway.store.replies_pg import take_reply
from gateway.store.requests_pg import PgServiceRequests
from gateway.store.rows import MESSAGE_HEAD, message_of


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
    {HISTORY} SELECT message_id, NULL, 'ACCEPTED', $9, $12, $13 FROM added
)
SELECT EXISTS (SELECT 1 FROM added) AS added, {M_HEAD}
FROM (SELECT 1) AS one
LEFT JOIN messages AS m ON m.message_id = $1 AND NOT EXISTS (SELECT 1 FROM added)
"""


_ACCEPT = _accept_sql(rejection_code=False)
_ACCEPT_REJECTION = _accept_sql(rejection_code=True)

# _ACCEPT of several messages (distinct ids, no rejection code): $1..$13 are arrays of
# _ACCEPT's $1..$13, an index a message; a row a message, in their order, saying only
# whether it was added (a duplicate, rare, is read by its key after: a join with
# messages here would be planned as a scan of the table while its statistics are stale).
_ACCEPT_MANY = f"""
WITH input AS (
    SELECT * FROM unnest($1::text[], $2::text[], $3::text[], $4::text[], $5::text[],
        $6::text[], $7::text[], $8::bytea[], $9::timestamptz[], $10::timestamptz[],
        $11::boolean[], $12::text[], $13::text[]) WITH ORDINALITY
        AS i(message_id, kind, sender, recipient, message_type, in_reply_to,
            content_sha256, xml, at, expires_at, test_message, reason, actor, n)
), added AS (
    INSERT INTO messages (message_id, kind, sender, recipient, message_type, in_reply_to,
        content_sha256, xml, state, created_at, updated_at, expires_at, test_message,
        version)
    SELECT message_id, kind, sender, recipient, message_type, in_reply_to,
        content_sha256, xml, 'ACCEPTED', at, at, expires_at, test_message, 1
    FROM input ORDER BY n
    ON CONFLICT (message_id) DO NOTHING
    RETURNING message_id
), logged AS (
    {HISTORY} SELECT i.message_id, NULL, 'ACCEPTED', i.at, i.reason, i.actor
    FROM input AS i JOIN added USING (message_id) ORDER BY i.n
)
SELECT added.message_id IS NOT NULL AS added
FROM input AS i LEFT JOIN added USING (message_id)
ORDER BY i.n
"""

# $1 id, $2 from, $3 to, $4 version (NULL: any), $5 at, $6 reason, $7 actor.
_MOVE = f"""
WITH moved AS (
    UPDATE messages SET state = $3, version = version + 1, updated_at = $5
    WHERE message_id = $1 AND state = $2 AND version = coalesce($4::integer, version)
    RETURNING {MESSAGE_HEAD}
), logged AS (
    {HISTORY} SELECT message_id, $2, $3, $5, $6, $7 FROM moved
)
SELECT true AS moved, {MESSAGE_HEAD} FROM moved
UNION ALL
SELECT false, {MESSAGE_HEAD} FROM messages
WHERE message_id = $1 AND NOT EXISTS (SELECT 1 FROM moved)
"""

# $1 id, $2 at, $3 reason, $4 queued reason, $5 actor. The row is locked first: a
# concurrent mover (the publisher's QUEUED) is waited for, and the state it left is the
# one moved from. The update then takes the row as locked, not as the statement's
# snapshot had it (no condition on the version, which the snapshot may predate).
_DELIVER = f"""
WITH old AS (
    SELECT message_id, state, version FROM messages
    WHERE message_id = $1 AND state IN ('ACCEPTED', 'QUEUED')
    FOR UPDATE
), moved AS (
    UPDATE messages AS m
    SET state = 'DELIVERED', updated_at = $2,
        version = m.version + CASE WHEN old.state = 'ACCEPTED' THEN 2 ELSE 1 END
    FROM old
    WHERE m.message_id = old.message_id
    RETURNING {M_HEAD}, old.state AS was
), logged AS (
    {HISTORY}
    SELECT moved.message_id, step.from_state, step.to_state, $2, step.reason, $5
    FROM moved, (VALUES (1, 'ACCEPTED', 'QUEUED', $4::text), (2, 'QUEUED', 'DELIVERED', $3::text))
        AS step(n, from_state, to_state, reason)
    WHERE step.n = 2 OR moved.was = 'ACCEPTED'
    ORDER BY step.n
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
    {HISTORY} SELECT message_id, 'DELIVERED', 'ACKED', $2, $3, $4 FROM moved
), {settle_request("$2", "$4")}
SELECT true AS moved, {MESSAGE_HEAD} FROM moved
UNION ALL
SELECT false, {MESSAGE_HEAD} FROM messages
WHERE message_id = $1 AND NOT EXISTS (SELECT 1 FROM moved)
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
    {HISTORY}
    SELECT $1, step.from_state, step.to_state, $4, step.reason, $9
    FROM unnest($6::text[], $7::text[], $8::text[]) WITH ORDINALITY
        AS step(from_state, to_state, reason, n)
    WHERE EXISTS (SELECT 1 FROM moved)
    ORDER BY step.n
)
SELECT {MESSAGE_HEAD} FROM moved
"""


def _answer_sql(*, rejection_code: bool) -> str:
    """SendResponse's writes in one statement, all or nothing, when the request is as the
    router read it, or further along the same path (another process journaled a step of
    it meanwhile: the steps still to make are the path's rest, as :func:`answer_path`
    would say). The request is locked first, the response inserted next, and the request
    moved only if the insert happened: a twin journaling the same response meanwhile
    leaves nothing written.

    $1 request, $2 its state seen, $3 its version seen, $4 final, $5 state to, $6 steps,
    $7 at, $8 answered_by (NULL: unchanged), $9..$11 the steps' from, to and reason;
    the response: $12 id, $13 kind, $14 sender, $15 recipient, $16 type, $17 digest,
    $18 xml, $19 expires at, $20 test, $21 actor (of its ACCEPTED row), $22 rejection
    code (with ``rejection_code``). No row: nothing written (the request left the path
    or was claimed since, or the response is journaled already)."""
    column, value = (", rejection_code", ", $22") if rejection_code else ("", "")
    return f"""
WITH old AS (
    SELECT message_id, array_position($9::text[], state) AS first_step FROM messages
    WHERE message_id = $1 AND kind IS NOT DISTINCT FROM 'request'
        AND (state = ANY($9::text[]) OR (state = $2 AND version = $3))
        AND (NOT $4 OR answered_by IS NULL)
        AND NOT EXISTS (SELECT 1 FROM messages WHERE message_id = $12)
    FOR UPDATE
), added AS (
    INSERT INTO messages (message_id, kind, sender, recipient, message_type, in_reply_to,
        content_sha256, xml, state, created_at, updated_at, expires_at, test_message,
        version{column})
    SELECT $12, $13, $14, $15, $16, $1, $17, $18, 'ACCEPTED', $7, $7, $19, $20, 1{value}
    FROM old
    ON CONFLICT (message_id) DO NOTHING
    RETURNING message_id
), moved AS (
    UPDATE messages AS m
    SET state = $5, version = m.version + $6 + 1 - coalesce(old.first_step, $6 + 1),
        updated_at = $7, answered_by = coalesce($8, m.answered_by)
    FROM old
    WHERE m.message_id = old.message_id AND EXISTS (SELECT 1 FROM added)
    RETURNING {M_HEAD}, old.first_step
), added_logged AS (
    {HISTORY} SELECT message_id, NULL, 'ACCEPTED', $7, NULL, $21 FROM added
), logged AS (
    {HISTORY}
    SELECT $1, step.from_state, step.to_state, $7, step.reason, 'bus'
    FROM moved, unnest($9::text[], $10::text[], $11::text[]) WITH ORDINALITY
        AS step(from_state, to_state, reason, n)
    WHERE step.n >= moved.first_step
    ORDER BY step.n
)
SELECT {MESSAGE_HEAD} FROM moved
"""


_ANSWER = _answer_sql(rejection_code=False)
_ANSWER_REJECTION = _answer_sql(rejection_code=True)


class PgJournal(JournalFlow[asyncpg.Connection]):
    """The :class:`~gateway.store.base.Journal` on a :class:`PgDatabase`."""

    REQUEST_FOR_ANSWER = f"""
SELECT {MESSAGE_HEAD}, answered_by FROM messages
WHERE message_id = $1 AND kind IS NOT DISTINCT FROM 'request' FOR UPDATE
"""
    CLAIM = """
UPDATE messages SET answered_by = $2
WHERE message_id = $1 AND kind IS NOT DISTINCT FROM 'request'
    AND (answered_by IS NULL OR answered_by = $2)
RETURNING message_id
"""

    database: PgDatabase

    def __init__(self, database: PgDatabase) -> None:
        super().__init__(database, PgServiceRequests(database))
        self._accepts = Batcher(
            self._accept_alone, self._accept_together, lambda a: a.message.message_id
        )

    async def _accept(
        self,
        connection: asyncpg.Connection,
        message: NewMessage,
        at: datetime,
        reason: str | None,
        actor: str | None,
    ) -> AcceptResult:
        return await _accept(connection, Acceptance(message, at, reason, actor))

    async def _accept_checked(
        self, message: NewMessage, at: datetime, reason: str | None, actor: str | None
    ) -> AcceptResult:
        """The accepts made in one turn of the event loop (a fan-out's parts) are one
        statement."""
        if message.rejection_code is not None:
            return await super()._accept_checked(message, at, reason, actor)
        return await self._accepts.submit(Acceptance(message, at, reason, actor))

    async def _accept_alone(self, accepting: Acceptance) -> AcceptResult:
        async with self.database.writing() as connection:
            return await _accept(connection, accepting)

    async def _accept_together(self, batch: list[Acceptance]) -> list[AcceptResult | Exception]:
        async with self.database.writing() as connection:
            return await _accept_many(connection, batch)

    async def _move(
        self,
        connection: asyncpg.Connection,
        message_id: str,
        step: Step,
        version: int | None,
        at: datetime,
        actor: str | None,
    ) -> MessageRecord:
        return await _move(connection, message_id, step, version, at, actor)

    async def _deliver(
        self,
        message_id: str,
        at: datetime,
        reason: str | None,
        queued_reason: str | None,
        actor: str | None,
    ) -> MessageRecord:
        async with self.database.writing() as connection:
            row = await connection.fetchrow(_DELIVER, message_id, at, reason, queued_reason, actor)
        if row is None:
            raise not_found(message_id)
        record = message_of(row)
        if not row["moved"]:
            raise conflict(message_id, MessageState.QUEUED, MessageState.DELIVERED, None, record)
        return record

    async def _acknowledge(
        self, message_id: str, at: datetime, reason: str | None, actor: str | None
    ) -> Acknowledged:
        async with self.database.writing() as connection:
            row = await connection.fetchrow(_ACKNOWLEDGE, message_id, at, reason, actor)
        if row is None:
            raise not_found(message_id)
        return Acknowledged(message_of(row), bool(row["moved"]))

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
            return await take_reply(
                connection, message_id, save, at, reason, queued_reason, actor, along
            )

    async def _advance(
        self,
        connection: asyncpg.Connection,
        request_id: str,
        steps: list[Step],
        to_state: MessageState,
        at: datetime,
        answered_by: str | None,
    ) -> MessageRecord:
        moved = await connection.fetchrow(
            _ADVANCE,
            request_id,
            to_state.value,
            len(steps),
            at,
            answered_by,
            [s.from_state.value for s in steps],
            [s.to_state.value for s in steps],
            [s.reason for s in steps],
            "bus",
        )
        return message_of(moved)

    async def _answer_as_seen(
        self,
        response: NewMessage,
        seen: MessageRecord,
        steps: list[Step],
        final: bool,
        at: datetime,
        actor: str | None,
    ) -> Answered | None:
        record = accepted_record(response, at)
        params: list[Any] = [
            seen.message_id,
            seen.state.value,
            seen.version,
            final,
            (steps[-1].to_state if steps else seen.state).value,
            len(steps),
            at,
            response.message_id if final else None,
            [s.from_state.value for s in steps],
            [s.to_state.value for s in steps],
            [s.reason for s in steps],
            record.message_id,
            record.kind.value,
            record.sender,
            record.recipient,
            record.message_type,
            record.content_sha256,
            response.xml,
            record.expires_at,
            record.test_message,
            actor,
        ]
        async with self.database.writing() as connection:
            if response.rejection_code is None:
                row = await connection.fetchrow(_ANSWER, *params)
            else:
                row = await connection.fetchrow(_ANSWER_REJECTION, *params, response.rejection_code)
        if row is None:
            return None
        return Answered(AcceptResult(AcceptOutcome.ACCEPTED, record), message_of(row))


async def _move(
    connection: asyncpg.Connection,
    message_id: str,
    step: Step,
    version: int | None,
    at: datetime,
    actor: str | None,
) -> MessageRecord:
    """One conditional move and its history row, in one statement."""
    state, target = step.from_state, step.to_state
    row = await connection.fetchrow(
        _MOVE, message_id, state.value, target.value, version, at, step.reason, actor
    )
    if row is None:
        raise not_found(message_id)
    if not row["moved"]:
        raise conflict(message_id, state, target, version, message_of(row))
    return message_of(row)


class Acceptance(NamedTuple):
    """One :meth:`PgJournal.accept` call's arguments."""

    message: NewMessage
    at: datetime
    reason: str | None
    actor: str | None


def _accept_params(record: MessageRecord, accepting: Acceptance) -> list[Any]:
    """``_ACCEPT``'s $1 to $13 (``_ACCEPT_MANY``'s, a message's column of its arrays)."""
    return [
        record.message_id,
        record.kind.value,
        record.sender,
        record.recipient,
        record.message_type,
        record.in_reply_to,
        record.content_sha256,
        accepting.message.xml,
        record.created_at,
        record.expires_at,
        record.test_message,
        accepting.reason,
        accepting.actor,
    ]


async def _accept(connection: asyncpg.Connection, accepting: Acceptance) -> AcceptResult:
    message = accepting.message
    record = accepted_record(message, accepting.at)
    params = _accept_params(record, accepting)
    if message.rejection_code is None:
        row = await connection.fetchrow(_ACCEPT, *params)
    else:
        row = await connection.fetchrow(_ACCEPT_REJECTION, *params, message.rejection_code)
    return await _accepted(connection, message, record, row)


async def _accept_many(
    connection: asyncpg.Connection, batch: list[Acceptance]
) -> list[AcceptResult | Exception]:
    """:func:`_accept` of messages of distinct ids, none with a rejection code, in one
    statement: a result or a refusal for each."""
    records = [accepted_record(accepting.message, accepting.at) for accepting in batch]
    params = [_accept_params(r, accepting) for r, accepting in zip(records, batch, strict=True)]
    rows = await connection.fetch(_ACCEPT_MANY, *map(list, zip(*params, strict=True)))
    results: list[AcceptResult | Exception] = []
    for accepting, record, row in zip(batch, records, rows, strict=True):
        try:
            if row["added"]:
                results.append(AcceptResult(AcceptOutcome.ACCEPTED, record))
            else:
                results.append(await _duplicate(connection, accepting.message))
        except Exception as exc:  # a refusal of this message alone
            results.append(exc)
    return results


async def _accepted(
    connection: asyncpg.Connection, message: NewMessage, record: MessageRecord, row: Any
) -> AcceptResult:
    """What an accept's row says: ``added``, or else the row found there."""
    if row["added"]:
        return AcceptResult(AcceptOutcome.ACCEPTED, record)
    if row["state"] is None:  # a concurrent twin committed after this statement began
        return await _duplicate(connection, message)
    return duplicate_or_refusal(message, row)


async def _duplicate(connection: asyncpg.Connection, message: NewMessage) -> AcceptResult:
    """``message`` found journaled already: read as it is now."""
    row = await connection.fetchrow(JournalFlow.BY_ID, message.message_id)
    if row is None:
        raise not_found(message.message_id)
    return duplicate_or_refusal(message, row)
