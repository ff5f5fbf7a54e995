"""SQL pieces the PostgreSQL stores' one-statement writes share."""

from __future__ import annotations

from typing import Any

from gateway.core.aggregation import ServiceRequestState
from gateway.store.rows import MESSAGE_HEAD, SERVICE_REQUEST_COLUMNS
from gateway.store.service_requests import next_deadline_of, part_links

#: A message's head columns, qualified by the alias ``m`` (an ``UPDATE messages AS m``).
M_HEAD = ", ".join(f"m.{column}" for column in MESSAGE_HEAD.split(", "))

#: The start of a history row's insert; a ``SELECT`` of its six values follows.
HISTORY = "INSERT INTO transitions (message_id, from_state, to_state, at, reason, actor)"


def settle_request(at: str, actor: str) -> str:
    """CTEs ``settled`` and ``settled_logged`` (after a CTE ``moved`` of responses just
    taken): a final answer's request RESPONDED -> RESPONSE_DELIVERED, with its history
    row. ``at`` and ``actor`` are the statement's parameters for them (``$n``)."""
    return f"""settled AS (
    UPDATE messages AS r
    SET state = 'RESPONSE_DELIVERED', version = r.version + 1, updated_at = {at}
    FROM moved
    WHERE moved.kind = 'response' AND r.message_id = moved.in_reply_to
        AND r.state = 'RESPONDED' AND r.answered_by = moved.message_id
    RETURNING r.message_id
), settled_logged AS (
    {HISTORY} SELECT message_id, 'RESPONDED', 'RESPONSE_DELIVERED', {at}, NULL, {actor}
    FROM settled
)"""


def link_parts(sr: str, message_ids: str, part_ids: str, source: str) -> str:
    """The insert of a service request's part links (``sr``, and the arrays
    ``message_ids`` and ``part_ids``, as ``$n``), if the CTE ``source`` has a row;
    links that exist already are left alone."""
    return f"""
INSERT INTO service_request_messages (message_id, service_request_id, part_id)
SELECT link.message_id, {sr}, link.part_id
FROM unnest({message_ids}::text[], {part_ids}::text[]) AS link(message_id, part_id)
WHERE EXISTS (SELECT 1 FROM {source})
ON CONFLICT (message_id) DO NOTHING
"""


def save_request(sr: str, at: str, first: int, where: str, claim: str = "NULL") -> str:
    """CTEs ``saved`` (the service request's row where ``where`` holds, its version one
    up, its callback due at ``at`` once final, or claimed until ``claim`` if that is not
    NULL: :class:`~gateway.store.replies.ReplySave`) and ``linked`` (its sent parts'
    links). Parameters ``$first`` on are :func:`save_values`."""
    status, completed_by, state, deadline, final, message_ids, part_ids = (
        f"${first + i}" for i in range(7)
    )
    becomes_due = f"{final} AND callback_state = 'pending'"
    return f"""saved AS (
    UPDATE service_requests
    SET status = {status}, completed_by = {completed_by}, state = {state}::jsonb,
        next_deadline = {deadline}, updated_at = {at}, version = version + 1,
        callback_state = CASE WHEN {becomes_due} THEN 'due' ELSE callback_state END,
        callback_next_at = CASE WHEN {becomes_due}
            THEN coalesce({claim}::timestamptz, {at}::timestamptz) ELSE callback_next_at END,
        callback_attempts = CASE WHEN {becomes_due} AND {claim} IS NOT NULL
            THEN callback_attempts + 1 ELSE callback_attempts END
    WHERE {where}
    RETURNING {SERVICE_REQUEST_COLUMNS}
), linked AS ({link_parts(sr, message_ids, part_ids, "saved")})"""


def save_values(state: ServiceRequestState) -> list[Any]:
    """The parameters of :func:`save_request` for ``state``, in its order."""
    links = part_links(state)
    return [
        state.status.value,
        None if state.completed_by is None else state.completed_by.value,
        state.model_dump_json(),
        next_deadline_of(state),
        state.final,
        list(links),
        list(links.values()),
    ]
