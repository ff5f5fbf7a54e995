"""A reply taken into its service request on PostgreSQL: one statement
(:mod:`gateway.store.replies`).

How it stays all or nothing under READ COMMITTED, in autocommit:

* ``sr`` locks the service request's row ``FOR UPDATE`` if it is still at the
  expected version. A concurrent save is waited for, and the version is checked again
  on the row it committed: a row saved meanwhile drops out, and nothing else is
  written (a conflict). Once locked, no other writer can save the request until this
  statement ends, so its own save cannot be refused after the response moved.
* ``old0`` locks the response if it is in a state it is taken from (only when ``sr``
  has the request, or no save is asked): a concurrent mover (the publisher's QUEUED,
  another copy taken) is waited for and the state it left is the one moved from (a
  copy taken first leaves it ACKED: it drops out). ``old1``, ``old2``, ... lock those
  along in the same way, only if ``old0`` has the first.
* ``moved`` (``moved0``, ``moved1``, ...: nothing unless ``old0`` has the first
  response) and its history rows, the requests settled (as ``acknowledge`` does) and
  ``saved`` (on the condition that the first response moved) follow from those. The
  request's row is always locked before the responses', by every writer of both;
  responses go along only with a save, so writers of one request's responses take
  turns at its row, and nobody waits for a response while holding another one that
  its writer wants.

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

import functools
from collections.abc import Sequence
from datetime import datetime
from typing import Any

import asyncpg

from gateway.core.errors import InternalError
from gateway.core.lifecycle import MessageState
from gateway.store.journal_rules import TAKEN_FROM, conflict, not_found, reply_path
from gateway.store.pg_sql import HISTORY, M_HEAD, save_request, save_values, settle_request
from gateway.store.records import MessageRecord
from gateway.store.replies import AlongReply, ReplyOutcome, ReplySave, ReplyTaken
from gateway.store.rows import MESSAGE_HEAD, SERVICE_REQUEST_COLUMNS, message_of, service_request_of
from gateway.store.service_requests import ServiceRequestRecord

_SR = SERVICE_REQUEST_COLUMNS.split(", ")
_SAVED = ", ".join(f"saved.{column} AS sr_{column}" for column in _SR)

# $1 the response, $2 at, $3 actor; the path (:func:`reply_path` from ACCEPTED): $4
# state to, $5 from states, $6 to states, $7 each response's reasons in turn (one per
# step, the first response's first); $8 service request (NULL: no save), $9 its
# expected version, $10 status, $11 completed_by, $12 state, $13 next deadline, $14
# final, $15 message ids and $16 part ids of its sent parts; $17 until when a callback
# it makes due is claimed (NULL: not claimed); $18 on: the responses along. Nothing
# moves unless the first response does, nothing is saved at a stale version (or none
# asked), nor unless the first response moved.
_SAVE_WHERE = "id = $8::text AND version = $9::integer AND EXISTS (SELECT 1 FROM moved)"
_SAVE = save_request("$8::text", "$2", 10, _SAVE_WHERE, "$17::timestamptz")
_STEPS = "array_length($5::text[], 1)"


@functools.cache
def take_reply_sql(along: int) -> str:
    """The statement that takes a response and ``along`` more (``$18`` on).

    Each response is locked by a lookup of its own key (``old0``, ``old1``, ...), so
    that the plan finds each by its key however many rows the table has, and
    PostgreSQL plans it once for all executions. Over an array parameter it planned
    each execution anew, not knowing the array's length (0.88 ms a statement against
    0.42 in a micro-benchmark); over ``message_id = ANY(...)``, an unanalyzed
    journal's plan read the whole table."""
    ids = ["$1", *(f"${18 + n}" for n in range(along))]
    each = ", ".join(_take_one(n, id) for n, id in enumerate(ids))
    moved = " UNION ALL ".join(f"SELECT * FROM moved{n}" for n in range(len(ids)))
    return f"""
WITH sr AS (
    SELECT id FROM service_requests WHERE id = $8::text AND version = $9::integer
    FOR UPDATE
), {each}, moved AS ({moved}), logged AS (
    {HISTORY}
    SELECT moved.message_id, step.from_state, step.to_state, $2,
        ($7::text[])[(moved.n - 1) * {_STEPS} + step.n], $3
    FROM moved, unnest($5::text[], $6::text[]) WITH ORDINALITY AS step(from_state, to_state, n)
    WHERE step.n >= moved.first_step
    ORDER BY moved.n, step.n
), {settle_request("$2", "$3")}, {_SAVE}
SELECT head.*, EXISTS (SELECT 1 FROM sr) AS locked,
    ARRAY(SELECT message_id FROM moved WHERE n > 1) AS along, {_SAVED}
FROM (
    SELECT true AS moved, {MESSAGE_HEAD} FROM moved WHERE n = 1
    UNION ALL
    SELECT false, {MESSAGE_HEAD} FROM messages
    WHERE message_id = $1 AND NOT EXISTS (SELECT 1 FROM moved)
) AS head
LEFT JOIN saved ON true
"""


def _take_one(n: int, id: str) -> str:
    """CTEs ``old<n>``, response ``id`` (a parameter) locked if it is in a state it is
    taken from (the request's row locked first, if a save is asked; one along, ``n``
    from 1, only if the first is), and ``moved<n>``, it moved. One lookup by key each:
    the plan is then the same whatever PostgreSQL knows of the table."""
    first = "" if n == 0 else " AND EXISTS (SELECT 1 FROM old0)"
    return f"""old{n} AS (
    SELECT message_id, array_position($5::text[], state) AS first_step FROM messages
    WHERE message_id = {id}::text AND state = ANY($5::text[])
        AND ($8::text IS NULL OR EXISTS (SELECT 1 FROM sr)){first}
    FOR UPDATE
), moved{n} AS (
    UPDATE messages AS m
    SET state = $4, updated_at = $2, version = m.version + {_STEPS} - old.first_step + 1
    FROM old{n} AS old
    WHERE m.message_id = old.message_id
    RETURNING {M_HEAD}, old.first_step, {n + 1} AS n
)"""


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
    along: Sequence[AlongReply],
) -> list[Any]:
    steps = reply_path(MessageState.ACCEPTED, reason, queued_reason)
    reasons = [step.reason for step in steps]
    for other in along:
        other_path = reply_path(MessageState.ACCEPTED, other.reason, other.queued_reason)
        reasons += [step.reason for step in other_path]
    head: list[Any] = [
        message_id,
        at,
        actor,
        steps[-1].to_state.value,
        [step.from_state.value for step in steps],
        [step.to_state.value for step in steps],
        reasons,
    ]
    ids = [other.message_id for other in along]
    if save is None:
        return [*head, None, None, None, None, None, None, False, [], [], None, *ids]
    return [
        *head,
        str(save.state.id),
        save.expected_version,
        *save_values(save.state),
        save.claim_callback_until,
        *ids,
    ]


async def take_reply(
    connection: asyncpg.Connection,
    message_id: str,
    save: ReplySave | None,
    at: datetime,
    reason: str | None,
    queued_reason: str | None,
    actor: str | None,
    along: Sequence[AlongReply] = (),
) -> ReplyTaken:
    """:meth:`~gateway.store.base.Journal.take_reply` on ``connection`` (autocommit)."""
    params = _params(message_id, save, at, reason, queued_reason, actor, along)
    for _ in range(_ATTEMPTS):
        row = await connection.fetchrow(take_reply_sql(len(along)), *params)
        if row is None:
            raise not_found(message_id)
        record = message_of(row)
        if row["moved"]:
            taken_along = frozenset(row["along"])
            return ReplyTaken(ReplyOutcome.TAKEN, record, _saved(row, save), taken_along)
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
