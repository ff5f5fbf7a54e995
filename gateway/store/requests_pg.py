"""Service requests and their callback outbox on PostgreSQL, on asyncpg directly.

``create`` and ``save`` are one statement each: the row's write and the part links
go together in a data-modifying CTE (links that exist already are left alone). A
claim of due callbacks is one ``UPDATE`` over the due rows locked with ``SKIP
LOCKED``: of processes claiming at once, each row goes to one of them.
"""

from __future__ import annotations

import uuid
from datetime import datetime, timedelta
from typing import Any

import asyncpg

from gateway.core.aggregation import ServiceRequestState
from gateway.store.callbacks import Settlement
from gateway.store.pg import PgDatabase
from gateway.store.pg_sql import link_parts, save_request, save_values
from gateway.store.requests_flow import RequestsFlow
from gateway.store.rows import (
    S_SERVICE_REQUEST_COLUMNS,
    SERVICE_REQUEST_COLUMNS,
    Row,
    service_request_of,
)
from gateway.store.service_requests import (
    MessageLink,
    ServiceRequestRecord,
    not_found,
    part_links,
)

_COLUMNS = SERVICE_REQUEST_COLUMNS
_CREATE = f"""
WITH created AS (
    INSERT INTO service_requests (id, service, participant, idempotency_key, status,
        completed_by, state, next_deadline, created_at, updated_at, version,
        callback_url, callback_state, callback_next_at, request_digest)
    VALUES ($1, $2, $3, $4, $5, $6, $7::jsonb, $8, $9, $9, 1, $10, $11, $12, $13)
    ON CONFLICT DO NOTHING
    RETURNING id
), linked AS ({link_parts("$1", "$14", "$15", "created")})
SELECT count(*) AS created FROM created
"""
# $1 id, $2 expected version, $3 service, $4 at, $5.. save_values. The row is found by
# its key alone (not `service = $3`, which the planner may answer from an index on
# service while the table's statistics are stale: see gateway.store.journal_pg).
_SAVE = f"""
WITH {save_request("$1", "$4", 5, "id = $1 AND version = $2 AND service IS NOT DISTINCT FROM $3")}
SELECT {_COLUMNS} FROM saved
"""
_LINK = """
INSERT INTO service_request_messages (message_id, service_request_id, part_id)
VALUES ($1, $2, $3) ON CONFLICT (message_id) DO NOTHING RETURNING message_id
"""
_CLAIM_CALLBACKS = f"""
WITH due AS (
    SELECT id, callback_next_at FROM service_requests
    WHERE callback_state = 'due' AND callback_next_at <= $1
    ORDER BY callback_next_at, id LIMIT $2
    FOR UPDATE SKIP LOCKED
)
UPDATE service_requests AS s
SET callback_attempts = s.callback_attempts + 1, callback_next_at = $3
FROM due WHERE s.id = due.id
RETURNING {S_SERVICE_REQUEST_COLUMNS}, due.callback_next_at AS due_at
"""
_SETTLE_CALLBACK = """
UPDATE service_requests
SET callback_next_at = $3, callback_state = coalesce($4, callback_state),
    callback_last_error = coalesce($5, callback_last_error),
    callback_delivered_at = coalesce($6, callback_delivered_at),
    callback_attempts = coalesce($7, callback_attempts)
WHERE id = $1 AND callback_state = 'due' AND ($2::integer IS NULL OR callback_attempts = $2)
"""


class PgServiceRequests(RequestsFlow[asyncpg.Connection]):
    """The :class:`~gateway.store.base.ServiceRequests` on a :class:`PgDatabase`."""

    database: PgDatabase

    async def _create(
        self, connection: asyncpg.Connection, record: ServiceRequestRecord, values: tuple[Any, ...]
    ) -> bool:
        callback, links = record.callback, part_links(record.state)
        created = await connection.fetchval(
            _CREATE,
            *values,
            record.next_deadline,
            record.created_at,
            None if callback is None else callback.url,
            None if callback is None else callback.state.value,
            None if callback is None else callback.next_attempt_at,
            record.request_digest,
            list(links),
            list(links.values()),
        )
        return bool(created)

    async def _save(
        self,
        connection: asyncpg.Connection,
        state: ServiceRequestState,
        expected_version: int,
        at: datetime,
    ) -> Row | None:
        return await self.database.fetch_one(
            connection,
            _SAVE,
            str(state.id),
            expected_version,
            state.service,
            at,
            *save_values(state),
        )

    async def _link(
        self, connection: asyncpg.Connection, message_id: str, wanted: MessageLink
    ) -> MessageLink | None:
        try:
            linked = await connection.fetchval(
                _LINK, message_id, str(wanted.service_request_id), wanted.part_id
            )
        except asyncpg.ForeignKeyViolationError:
            raise not_found(str(wanted.service_request_id)) from None
        if linked is not None:
            return None
        return await self._link_of(connection, message_id)

    async def claim_callbacks(
        self, now: datetime, *, lease: timedelta, limit: int
    ) -> list[ServiceRequestRecord]:
        async with self.database.writing() as connection:
            rows = await connection.fetch(_CLAIM_CALLBACKS, now, limit, now + lease)
        rows = sorted(rows, key=lambda row: (row["due_at"], row["id"]))
        return [service_request_of(row) for row in rows]

    async def settle_callback(
        self, sr_id: uuid.UUID, attempt: int | None, settlement: Settlement
    ) -> bool:
        async with self.database.writing() as connection:
            status = await connection.execute(
                _SETTLE_CALLBACK,
                str(sr_id),
                attempt,
                settlement.next_attempt_at,
                None if settlement.state is None else settlement.state.value,
                settlement.last_error,
                settlement.delivered_at,
                settlement.attempts,
            )
        return bool(status != "UPDATE 0")
