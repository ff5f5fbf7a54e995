"""A reply taken into its service request on PostgreSQL: one statement
(:mod:`gateway.store.replies`).

How it stays all or nothing under READ COMMITTED, in autocommit:

* ``sr`` locks the service request's row ``FOR UPDATE`` if it is still at the
  expected version. A concurrent save is waited for, and the version is checked again
  on the row it committed: a row saved meanwhile drops out, and nothing else is
  written (a conflict). Once locked, no other writer can save the request until this
  statement ends, so its own save cannot be refused after the response moved.
* ``old`` locks the response if it is in a state it is taken from (only when ``sr``
  has the request, or no save is asked): a concurrent mover (the publisher's QUEUED,
  another copy taken) is waited for and the state it left is the one moved from (a
  copy taken first leaves it ACKED: it drops out).
* ``moved`` and its history rows, the request settled (as ``acknowledge`` does) and
  ``saved`` (on the condition that the response moved) follow from those two; the
  request's row is always locked before the response's, by every writer of both.

The path itself is not spelled here: it comes as parameter arrays, the steps of
:func:`~gateway.store.journal_rules.reply_path` from ACCEPTED, the one the SQLite
journal walks. A response is taken from a state that some step starts from; its
first step is that one, and the steps from there on are its moves and history rows,
in order.

When nothing moved, the statement returns the response as its snapshot had it, which
may predate a concurrent taker that won while this one waited for the row: a response
still found in a state it is taken from is read again.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

import asyncpg

from gateway.core.errors import InternalError
from gateway.core.lifecycle import MessageState
from gateway.store.journal_rules import TAKEN_FROM, conflict, not_found, reply_path
from gateway.store.pg_sql import HISTORY, M_HEAD, save_request, save_values, settle_request
from gateway.store.records import MessageRecord
from gateway.store.replies import ReplyOutcome, ReplySave, ReplyTaken
from gateway.store.rows import MESSAGE_HEAD, SERVICE_REQUEST_COLUMNS, message_of, service_request_of
from gateway.store.service_requests import ServiceRequestRecord

_SR = SERVICE_REQUEST_COLUMNS.split(", ")
_SAVED = ", ".join(f"saved.{column} AS sr_{column}" for column in _SR)

# $1 response, $2 at, $3 actor; its path (:func:`reply_path` from ACCEPTED): $4 state
# to, $5 from states, $6 to states, $7 reasons; $8 service request (NULL: no save),
# $9 its expected version, $10 status, $11 completed_by, $12 state, $13 next deadline,
# $14 final, $15 message ids and $16 part ids of its sent parts; $17 until when a
# callback it makes due is claimed (NULL: not claimed).
# Nothing saved at a stale version (or none asked), nor unless the response moved.
_SAVE_WHERE = "id = $8::text AND version = $9::integer AND EXISTS (SELECT 1 FROM moved)"
_SAVE = save_request("$8::text", "$2", 10, _SAVE_WHERE, "$17::timestamptz")
TAKE_REPLY = f"""
WITH sr AS (
    SELECT id FROM service_requests WHERE id = $8::text AND version = $9::integer
    FOR UPDATE
), old AS (
    SELECT message_id, array_position($5::text[], state) AS first_step FROM messages
    WHERE message_id = $1 AND state = ANY($5::text[])
        AND ($8::text IS NULL OR EXISTS (SELECT 1 FROM sr))
    FOR UPDATE
), moved AS (
    UPDATE messages AS m
    SET state = $4, updated_at = $2,
        version = m.version + array_length($5::text[], 1) - old.first_step + 1
    FROM old
    WHERE m.message_id = old.message_id
    RETURNING {M_HEAD}, old.first_step
), logged AS (
    {HISTORY}
    SELECT moved.message_id, step.from_state, step.to_state, $2, step.reason, $3
    FROM moved, unnest($5::text[], $6::text[], $7::text[]) WITH ORDINALITY
        AS step(from_state, to_state, reason, n)
    WHERE step.n >= moved.first_step
    ORDER BY step.n
), {settle_request("$2", "$3")}, {_SAVE}
SELECT head.*, EXISTS (SELECT 1 FROM sr) AS locked, {_SAVED}
FROM (
    SELECT true AS moved, {MESSAGE_HEAD} FROM moved
    UNION ALL
    SELECT false, {MESSAGE_HEAD} FROM messages
    WHERE message_id = $1 AND NOT EXISTS (SELECT 1 FROM moved)
) AS head
LEFT JOIN saved ON true
"""

_HEAD = f"SELECT {MESSAGE_HEAD} FROM messages WHERE message_id = $1"

#: Statements tried before a response that keeps moving under this one is given up.
_ATTEMPTS = 3


def _params(
    message_id: str,
    save: ReplySave | None,
    at: datetime,
    reason: str | None,
    queued_reason: str | None,
    actor: str | None,
) -> list[Any]:
    steps = reply_path(MessageState.ACCEPTED, reason, queued_reason)
    head: list[Any] = [
        message_id,
        at,
        actor,
        steps[-1].to_state.value,
        [step.from_state.value for step in steps],
        [step.to_state.value for step in steps],
        [step.reason for step in steps],
    ]
    if save is None:
        return [*head, None, None, None, None, None, None, False, [], [], None]
    return [
        *head,
        str(save.state.id),
        save.expected_version,
        *save_values(save.state),
        save.claim_callback_until,
    ]


async def take_reply(
    connection: asyncpg.Connection,
    message_id: str,
    save: ReplySave | None,
    at: datetime,
    reason: str | None,
    queued_reason: str | None,
    actor: str | None,
) -> ReplyTaken:
    """:meth:`~gateway.store.base.Journal.take_reply` on ``connection`` (autocommit)."""
    params = _params(message_id, save, at, reason, queued_reason, actor)
    for _ in range(_ATTEMPTS):
        row = await connection.fetchrow(TAKE_REPLY, *params)
        if row is None:
            raise not_found(message_id)
        record = message_of(row)
        if row["moved"]:
            return ReplyTaken(ReplyOutcome.TAKEN, record, _saved(row, save))
        if record.state not in TAKEN_FROM:
            return ReplyTaken(ReplyOutcome.NOT_TAKEN, record)
        if save is not None and not row["locked"]:
            return ReplyTaken(ReplyOutcome.CONFLICT, record)
        # As the snapshot had it: a concurrent taker won while this one waited.
        found = await _head(connection, message_id)
        if found.state not in TAKEN_FROM:
            return ReplyTaken(ReplyOutcome.NOT_TAKEN, found)
    raise conflict(message_id, record.state, MessageState.ACKED, None, record)


async def _head(connection: asyncpg.Connection, message_id: str) -> MessageRecord:
    row = await connection.fetchrow(_HEAD, message_id)
    if row is None:
        raise not_found(message_id)
    return message_of(row)


def _saved(row: asyncpg.Record, save: ReplySave | None) -> ServiceRequestRecord | None:
    if save is None:
        return None
    if row["sr_id"] is None:  # pragma: no cover - the locked request is saved with the move
        raise InternalError(f"service request {save.state.id} was not saved with its reply")
    return service_request_of({column: row[f"sr_{column}"] for column in _SR})
