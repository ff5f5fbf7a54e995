"""Service requests and their callback outbox on SQLite (aiosqlite).

The same guarantees as on PostgreSQL (:mod:`gateway.store.requests_pg`); each write
is one ``BEGIN IMMEDIATE`` transaction, serialized by SQLite's single writer.
"""

from __future__ import annotations

import sqlite3
import uuid
from datetime import UTC, datetime, timedelta

import aiosqlite

from gateway.core.aggregation import ServiceRequestState
from gateway.core.errors import InvalidContent
from gateway.core.service_lifecycle import ServiceState
from gateway.store.base import Closing
from gateway.store.callbacks import MAX_CALLBACK_URL, Settlement, new_callback
from gateway.store.journal_rules import Filters
from gateway.store.records import (
    DEFAULT_PAGE_SIZE,
    canonical_message_id,
    require_aware,
    require_name,
)
from gateway.store.rows import (
    SERVICE_REQUEST_COLUMNS,
    Row,
    service_request_of,
    sqlite_time,
    sqlite_time_or_none,
    utc,
)
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
from gateway.store.sqlite import SqliteDatabase

_COLUMNS = SERVICE_REQUEST_COLUMNS
_CREATE = """
INSERT INTO service_requests (id, service, participant, idempotency_key, status,
    completed_by, state, next_deadline, created_at, updated_at, version,
    callback_url, callback_state, callback_next_at, request_digest)
VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, 1, ?, ?, ?, ?)
ON CONFLICT DO NOTHING
RETURNING id
"""
_LINK = """
INSERT INTO service_request_messages (message_id, service_request_id, part_id)
VALUES (?, ?, ?) ON CONFLICT (message_id) DO NOTHING
"""
_SAVE = f"""
UPDATE service_requests
SET status = ?2, completed_by = ?3, state = ?4, updated_at = ?5, next_deadline = ?6,
    version = version + 1,
    callback_state = CASE WHEN ?1 AND callback_state = 'pending' THEN 'due'
        ELSE callback_state END,
    callback_next_at = CASE WHEN ?1 AND callback_state = 'pending' THEN ?5
        ELSE callback_next_at END
WHERE id = ?7 AND version = ?8 AND service = ?9
RETURNING {_COLUMNS}
"""
_BY_ID = f"SELECT {_COLUMNS} FROM service_requests WHERE id = ?"
_BY_KEY = f"SELECT {_COLUMNS} FROM service_requests WHERE participant = ? AND idempotency_key = ?"
_LINK_OF = "SELECT service_request_id, part_id FROM service_request_messages WHERE message_id = ?"
_PENDING = (
    f"SELECT {_COLUMNS} FROM service_requests WHERE status = 'PENDING' ORDER BY created_at, id"
)
_PENDING_DUE = f"""
SELECT {_COLUMNS} FROM service_requests
WHERE status = 'PENDING' AND next_deadline IS NOT NULL AND next_deadline <= ?
ORDER BY next_deadline, id LIMIT ?
"""
_NEXT_DUE = """
SELECT next_deadline FROM service_requests
WHERE status = 'PENDING' AND next_deadline IS NOT NULL ORDER BY next_deadline LIMIT 1
"""
_DUE_CALLBACKS = """
SELECT id FROM service_requests WHERE callback_state = 'due' AND callback_next_at <= ?
ORDER BY callback_next_at, id LIMIT ?
"""
_CLAIM_CALLBACK = f"""
UPDATE service_requests
SET callback_attempts = callback_attempts + 1, callback_next_at = ?
WHERE id = ? RETURNING {_COLUMNS}
"""
_SETTLE_CALLBACK = """
UPDATE service_requests
SET callback_next_at = ?, callback_state = coalesce(?, callback_state),
    callback_last_error = coalesce(?, callback_last_error),
    callback_delivered_at = coalesce(?, callback_delivered_at),
    callback_attempts = coalesce(?, callback_attempts)
WHERE id = ? AND callback_state = 'due' AND (?7 IS NULL OR callback_attempts = ?7)
"""


class SqliteServiceRequests(Closing):
    """The :class:`~gateway.store.base.ServiceRequests` on a :class:`SqliteDatabase`."""

    def __init__(self, database: SqliteDatabase) -> None:
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
        async with self.database.writing() as connection:
            created = await _one(
                connection,
                _CREATE,
                str(state.id),
                state.service,
                participant,
                idempotency_key,
                state.status.value,
                None if state.completed_by is None else state.completed_by.value,
                state.model_dump_json(),
                sqlite_time_or_none(record.next_deadline),
                sqlite_time(created_at),
                sqlite_time(created_at),
                None if callback is None else callback.url,
                None if callback is None else callback.state.value,
                None if callback is None else sqlite_time_or_none(callback.next_attempt_at),
                request_digest,
            )
            if created is not None:
                await _link_parts(connection, state)
                return record, True
            if idempotency_key is not None:
                row = await _one(connection, _BY_KEY, participant, idempotency_key)
                if row is not None:
                    return service_request_of(row), False
            row = await _one(connection, _BY_ID, str(state.id))
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
        async with self.database.writing() as connection:
            row = await _one(
                connection,
                _SAVE,
                int(state.final),
                state.status.value,
                None if state.completed_by is None else state.completed_by.value,
                state.model_dump_json(),
                sqlite_time(at),
                sqlite_time_or_none(next_deadline_of(state)),
                sr_id,
                expected_version,
                state.service,
            )
            if row is not None:
                await _link_parts(connection, state)
                return service_request_of(row)
            current = await _one(connection, _BY_ID, sr_id)
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
        async with self.database.writing() as connection:
            existing = await _link_of(connection, mid)
            if existing is None:
                try:
                    await connection.execute(_LINK, (mid, str(wanted.service_request_id), part_id))
                except sqlite3.IntegrityError:  # no such service request
                    raise not_found(str(sr_id)) from None
                return
        if existing != wanted:
            raise link_conflict(mid, existing)

    async def get(self, sr_id: uuid.UUID | str) -> ServiceRequestRecord:
        key = lookup_id(sr_id)
        async with self.database.reading() as connection:
            row = await _one(connection, _BY_ID, key)
        if row is None:
            raise not_found(str(sr_id))
        return service_request_of(row)

    async def by_message(self, message_id: str | uuid.UUID) -> MessageLink | None:
        try:
            mid = canonical_message_id(str(message_id))
        except InvalidContent:
            return None
        async with self.database.reading() as connection:
            return await _link_of(connection, mid)

    async def pending(self) -> list[ServiceRequestRecord]:
        return await self._select(_PENDING)

    async def pending_due(
        self, now: datetime, limit: int = DEFAULT_PAGE_SIZE
    ) -> list[ServiceRequestRecord]:
        require_aware("now", now)
        check_limit(limit)
        return await self._select(_PENDING_DUE, sqlite_time(now), limit)

    async def next_due(self) -> datetime | None:
        async with self.database.reading() as connection:
            row = await _one(connection, _NEXT_DUE)
        return None if row is None else utc(row["next_deadline"])

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
        filters = Filters(lambda _: "?", sqlite_time)
        filters.equal("status", None if status is None else ServiceState(status).value)
        filters.equal("service", service)
        filters.equal("participant", participant)
        filters.at_least("created_at", since)
        filters.after("created_at", "id", after)
        sql = (
            f"SELECT {_COLUMNS} FROM service_requests {filters.where()} "
            f"ORDER BY created_at, id LIMIT {filters.param(limit + 1)}"
        )
        return requests_page(await self._select(sql, *filters.values), limit)

    async def claim_callbacks(
        self, now: datetime, *, lease: timedelta, limit: int
    ) -> list[ServiceRequestRecord]:
        claimed: list[ServiceRequestRecord] = []
        async with self.database.writing() as connection:
            due = await connection.execute_fetchall(_DUE_CALLBACKS, (sqlite_time(now), limit))
            for candidate in due:
                row = await _one(
                    connection,
                    _CLAIM_CALLBACK,
                    sqlite_time(now + lease),
                    candidate["id"],
                )
                if row is not None:
                    claimed.append(service_request_of(row))
        return claimed

    async def settle_callback(
        self, sr_id: uuid.UUID, attempt: int | None, settlement: Settlement
    ) -> bool:
        async with self.database.writing() as connection:
            cursor = await connection.execute(
                _SETTLE_CALLBACK,
                (
                    sqlite_time_or_none(settlement.next_attempt_at),
                    None if settlement.state is None else settlement.state.value,
                    settlement.last_error,
                    sqlite_time_or_none(settlement.delivered_at),
                    settlement.attempts,
                    str(sr_id),
                    attempt,
                ),
            )
            changed = cursor.rowcount
            await cursor.close()
        return changed > 0

    async def _select(self, sql: str, *args: object) -> list[ServiceRequestRecord]:
        async with self.database.reading() as connection:
            rows = await connection.execute_fetchall(sql, args)
        return [service_request_of(row) for row in rows]  # type: ignore[arg-type]


async def _one(connection: aiosqlite.Connection, sql: str, *args: object) -> Row | None:
    cursor = await connection.execute(sql, args)
    try:
        row: Row | None = await cursor.fetchone()  # type: ignore[assignment]
    finally:
        await cursor.close()
    return row


async def _link_of(connection: aiosqlite.Connection, mid: str) -> MessageLink | None:
    row = await _one(connection, _LINK_OF, mid)
    if row is None:
        return None
    return MessageLink(uuid.UUID(row["service_request_id"]), row["part_id"])


async def _link_parts(connection: aiosqlite.Connection, state: ServiceRequestState) -> None:
    """Link every sent part of ``state`` not linked yet (inside the caller's transaction)."""
    links = part_links(state)
    if links:
        await connection.executemany(
            _LINK, [(mid, str(state.id), part) for mid, part in sorted(links.items())]
        )
