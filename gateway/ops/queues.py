"""The participant queues as the operator sees them (:class:`QueueView`).

Depths and dead-letter counts from the transport; the age of each queue's oldest
unsettled message (journaled ``QUEUED`` or ``DELIVERED``) from the journal, one
aggregate statement over the ``(recipient, state)`` index. Unacked and consumer counts
need the broker's management API; this reader leaves them unknown (``None``).
"""

from __future__ import annotations

from collections.abc import Iterable
from datetime import datetime

from gateway.ops.console_api import QueueView
from gateway.ops.kpi_queries import KpiDatabase
from gateway.store.rows import utc
from gateway.transport.base import Direction, Transport

#: The kind of message each direction's queues carry.
_KIND = {Direction.REQUESTS: "request", Direction.RESPONSES: "response"}

OLDEST_SQL = """
SELECT kind, recipient, MIN(created_at) AS oldest
FROM messages WHERE state IN ('QUEUED', 'DELIVERED')
GROUP BY kind, recipient
"""


async def oldest_unsettled(db: KpiDatabase) -> dict[tuple[str, str], datetime]:
    """(kind, recipient) -> creation time of its oldest message not yet settled."""
    rows = await db.fetch(OLDEST_SQL, {})
    return {(row["kind"], row["recipient"]): utc(row["oldest"]) for row in rows}


async def read_queues(
    transport: Transport, db: KpiDatabase, participants: Iterable[str], *, now: datetime
) -> tuple[QueueView, ...]:
    """Both directions' queues of each participant, requests first."""
    oldest = await oldest_unsettled(db)
    views: list[QueueView] = []
    for direction in Direction:
        for participant in participants:
            since = oldest.get((_KIND[direction], participant))
            views.append(
                QueueView(
                    direction=direction,
                    participant=participant,
                    ready=await transport.depth(direction, participant),
                    unacked=None,
                    consumers=None,
                    oldest_age_s=None if since is None else max(0.0, (now - since).total_seconds()),
                    dead_letters=await transport.dead_letter_count(direction, participant),
                )
            )
    return tuple(views)
