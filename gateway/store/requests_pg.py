"""Service requests and their callback outbox on PostgreSQL, on asyncpg directly.

``create`` and ``save`` are one statement each: the row's write and the part links
go together in a data-modifying CTE (links that exist already are left alone). A
claim of due callbacks is one ``UPDATE`` over the due rows locked with ``SKIP
LOCKED``: of processes claiming at once, each row goes to one of them.
"""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

import asyncpg

from gateway.core.aggregation import ServiceRequestState
from gateway.core.errors import InvalidContent
from gateway.core.service_lifecycle import ServiceState
from gateway.store.base import Closing
from gateway.store.callbacks import MAX_CALLBACK_URL, Settlement, new_callback
from gateway.store.journal_rules import Filters
from gateway.store.pg import PgDatabase
from gateway.store.records import (
    DEFAULT_PAGE_SIZE,
    canonical_message_id,
    require_aware,
    require_name,
)
from gateway.store.rows import SERVICE_REQUEST_COLUMNS, service_request_of, utc
from gateway.store.service_requests import (
    MessageLink,
    ServiceRequestConflict,
    ServiceRequestPage,
    ServiceRequestRecord,
    check_limit,
    conflict,
    link_conflict,
    lookup_id,
    next_deadline_of,
    not_found,
    part_links,
    requests_page,
)

_COLUMNS = SERVICE_REQUEST_COLUMNS
_S_COLUMNS = ", ".join(f"s.{c}" for c in _COLUMNS.split(", "))
# $n..$n+2: message ids, part ids, the request's id: the links of its sent parts.
_LINK_PARTS = """
INSERT INTO service_request_messages (message_id, service_request_id, part_id)
SELECT link.message_id, {sr}, link.part_id
FROM unnest({mids}::text[], {parts}::text[]) AS link(message_id, part_id)
WHERE EXISTS (SELECT 1 FROM {source})
ON CONFLICT (message_id) DO NOTHING
"""
_CREATE = f"""
WITH created AS (
    INSERT INTO service_requests (id, service, participant, idempotency_key, status,
        completed_by, state, next_deadline, created_at, updated_at, version,
        callback_url, callback_state, callback_next_at, request_digest)
    VALUES ($1, $2, $3, $4, $5, $6, $7::jsonb, $8, $9, $9, 1, $10, $11, $12, $13)
    ON CONFLICT DO NOTHING
    RETURNING id
), linked AS ({_LINK_PARTS.format(sr="$1", mids="$14", parts="$15", source="created")})
SELECT count(*) AS created FROM created
"""
_SAVE = f"""
WITH saved AS (
    UPDATE service_requests
    SET status = $4, completed_by = $5, state = $6::jsonb, next_deadline = $7,
        updated_at = $8, version = version + 1,
        callback_state = CASE WHEN $9 AND callback_state = 'pending' THEN 'due'
            ELSE callback_state END,
        callback_next_at = CASE WHEN $9 AND callback_state = 'pending' THEN $8
            ELSE callback_next_at END
    WHERE id = $1 AND version = $2 AND service = $3
    RETURNING {_COLUMNS}
), linked AS ({_LINK_PARTS.format(sr="$1", mids="$10", parts="$11", source="saved")})
SELECT {_COLUMNS} FROM saved
"""
_BY_ID = f"SELECT {_COLUMNS} FROM service_requests WHERE id = $1"
_BY_KEY = f"SELECT {_COLUMNS} FROM service_requests WHERE participant = $1 AND idempotency_key = $2"
_LINK = """
INSERT INTO service_request_messages (message_id, service_request_id, part_id)
VALUES ($1, $2, $3) ON CONFLICT (message_id) DO NOTHING RETURNING message_id
"""
_LINK_OF = "SELECT service_request_id, part_id FROM service_request_messages WHERE message_id = $1"
_PENDING = (
    f"SELECT {_COLUMNS} FROM service_requests WHERE status = 'PENDING' ORDER BY created_at, id"
)
_PENDING_DUE = f"""
SELECT {_COLUMNS} FROM service_requests
WHERE status = 'PENDING' AND next_deadline IS NOT NULL AND next_deadline <= $1
ORDER BY next_deadline, id LIMIT $2
"""
_NEXT_DUE = """
SELECT next_deadline FROM service_requests
WHERE status = 'PENDING' AND next_deadline IS NOT NULL ORDER BY next_deadline LIMIT 1
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
RETURNING {_S_COLUMNS}, due.callback_next_at AS due_at
"""
_SETTLE_CALLBACK = """
UPDATE service_requests
SET callback_next_at = $3, callback_state = coalesce($4, callback_state),
    callback_last_error = coalesce($5, callback_last_error),
    callback_delivered_at = coalesce($6, callback_delivered_at),
    callback_attempts = coalesce($7, callback_attempts)
WHERE id = $1 AND callback_state = 'due' AND ($2::integer IS NULL OR callback_attempts = $2)
"""


class PgServiceRequests(Closing):
    """The :class:`~gateway.store.base.ServiceRequests` on a :class:`PgDatabase`."""

    def __init__(self, database: PgDatabase) -> None:
        self.database = database

    async def migrate(self) -> None:
        await self.database.migrate()

    async def close(self) -> None:
        await self.database.close()

    async def create(
        self,
        state: ServiceRequestState,
        participant: str,
        idempotency_key: str | None = None,
        *,
        callback_url: str | None = None,
        request_digest: str | None = None,
    ) -> tuple[ServiceRequestRecord, bool]:
        require_name("participant", participant)
        require_name("idempotency_key", idempotency_key)
        require_name("service", state.service)
        require_name("callback_url", callback_url, MAX_CALLBACK_URL)
        created_at = state.created_at.astimezone(UTC)
        callback = new_callback(callback_url, state, created_at)
        record = ServiceRequestRecord(
            state=state,
            participant=participant,
            idempotency_key=idempotency_key,
            next_deadline=next_deadline_of(state),
            created_at=created_at,
            updated_at=created_at,
            version=1,
            callback=callback,
            request_digest=request_digest,
        )
        links = part_links(state)
        pool = await self.database.pool()
        async with pool.acquire() as connection:
            created = await connection.fetchval(
                _CREATE,
                str(state.id),
                state.service,
                participant,
                idempotency_key,
                state.status.value,
                None if state.completed_by is None else state.completed_by.value,
                state.model_dump_json(),
                record.next_deadline,
                created_at,
                None if callback is None else callback.url,
                None if callback is None else callback.state.value,
                None if callback is None else callback.next_attempt_at,
                request_digest,
                list(links),
                list(links.values()),
            )
            if created:
                return record, True
            # The key was used first (maybe by a concurrent POST), or the id is taken.
            if idempotency_key is not None:
                row = await connection.fetchrow(_BY_KEY, participant, idempotency_key)
                if row is not None:
                    return service_request_of(row), False
            row = await connection.fetchrow(_BY_ID, str(state.id))
        existing = None if row is None else service_request_of(row)
        if (
            existing is not None
            and existing.participant == participant
            and existing.service == state.service
            and existing.idempotency_key == idempotency_key
        ):
            return existing, False
        raise ServiceRequestConflict(
            f"service request {state.id} already exists for another submission",
            service_request_id=str(state.id),
        )

    async def save(
        self, state: ServiceRequestState, expected_version: int, *, at: datetime
    ) -> ServiceRequestRecord:
        require_aware("at", at)
        sr_id = str(state.id)
        links = part_links(state)
        pool = await self.database.pool()
        async with pool.acquire() as connection:
            row = await connection.fetchrow(
                _SAVE,
                sr_id,
                expected_version,
                state.service,
                state.status.value,
                None if state.completed_by is None else state.completed_by.value,
                state.model_dump_json(),
                next_deadline_of(state),
                at,
                state.final,
                list(links),
                list(links.values()),
            )
            if row is not None:
                return service_request_of(row)
            current = await connection.fetchrow(_BY_ID, sr_id)
        if current is None:
            raise not_found(sr_id)
        if current["service"] != state.service:
            raise ValueError(
                f"service request {sr_id} is a {current['service']!r} request, "
                f"not {state.service!r}"
            )
        raise conflict(sr_id, expected_version, int(current["version"]))

    async def link_message(
        self, message_id: str | uuid.UUID, sr_id: uuid.UUID, part_id: str
    ) -> None:
        mid = canonical_message_id(str(message_id))
        require_name("part_id", part_id)
        wanted = MessageLink(uuid.UUID(str(sr_id)), part_id)
        pool = await self.database.pool()
        async with pool.acquire() as connection:
            try:
                linked = await connection.fetchval(
                    _LINK, mid, str(wanted.service_request_id), part_id
                )
            except asyncpg.ForeignKeyViolationError:
                raise not_found(str(sr_id)) from None
            if linked is not None:
                return
            existing = await _link_of(connection, mid)
        if existing is not None and existing != wanted:
            raise link_conflict(mid, existing)

    async def get(self, sr_id: uuid.UUID | str) -> ServiceRequestRecord:
        key = lookup_id(sr_id)
        pool = await self.database.pool()
        row = await pool.fetchrow(_BY_ID, key)
        if row is None:
            raise not_found(str(sr_id))
        return service_request_of(row)

    async def by_message(self, message_id: str | uuid.UUID) -> MessageLink | None:
        try:
            mid = canonical_message_id(str(message_id))
        except InvalidContent:
            return None
        pool = await self.database.pool()
        async with pool.acquire() as connection:
            return await _link_of(connection, mid)

    async def pending(self) -> list[ServiceRequestRecord]:
        pool = await self.database.pool()
        return [service_request_of(row) for row in await pool.fetch(_PENDING)]

    async def pending_due(
        self, now: datetime, limit: int = DEFAULT_PAGE_SIZE
    ) -> list[ServiceRequestRecord]:
        require_aware("now", now)
        check_limit(limit)
        pool = await self.database.pool()
        return [service_request_of(row) for row in await pool.fetch(_PENDING_DUE, now, limit)]

    async def next_due(self) -> datetime | None:
        pool = await self.database.pool()
        value = await pool.fetchval(_NEXT_DUE)
        return None if value is None else utc(value)

    async def find(
        self,
        *,
        status: ServiceState | None = None,
        service: str | None = None,
        participant: str | None = None,
        since: datetime | None = None,
        limit: int = DEFAULT_PAGE_SIZE,
        after: str | None = None,
    ) -> ServiceRequestPage:
        check_limit(limit)
        require_aware("since", since)
        filters = Filters(lambda n: f"${n}")
        filters.equal("status", None if status is None else ServiceState(status).value)
        filters.equal("service", service)
        filters.equal("participant", participant)
        filters.at_least("created_at", since)
        filters.after("created_at", "id", after)
        sql = (
            f"SELECT {_COLUMNS} FROM service_requests {filters.where()} "
            f"ORDER BY created_at, id LIMIT {filters.param(limit + 1)}"
        )
        pool = await self.database.pool()
        rows = [service_request_of(row) for row in await pool.fetch(sql, *filters.values)]
        return requests_page(rows, limit)

    async def claim_callbacks(
        self, now: datetime, *, lease: timedelta, limit: int
    ) -> list[ServiceRequestRecord]:
        pool = await self.database.pool()
        rows = await pool.fetch(_CLAIM_CALLBACKS, now, limit, now + lease)
        rows = sorted(rows, key=lambda row: (row["due_at"], row["id"]))
        return [service_request_of(row) for row in rows]

    async def settle_callback(
        self, sr_id: uuid.UUID, attempt: int | None, settlement: Settlement
    ) -> bool:
        pool = await self.database.pool()
        status = await pool.execute(
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


async def _link_of(connection: Any, mid: str) -> MessageLink | None:
    row = await connection.fetchrow(_LINK_OF, mid)
    if row is None:
        return None
    return MessageLink(uuid.UUID(row["service_request_id"]), row["part_id"])
