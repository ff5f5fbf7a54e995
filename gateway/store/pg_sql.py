"""SQL pieces the PostgreSQL journal's one-statement writes share."""

from __future__ import annotations

from gateway.store.rows import MESSAGE_HEAD

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
