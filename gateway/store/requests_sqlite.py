"""Service requests and their callback outbox on SQLite (aiosqlite).

The same guarantees as on PostgreSQL (:mod:`gateway.store.requests_pg`); each write
is one ``BEGIN IMMEDIATE`` transaction, serialized by SQLite's single writer.
"""

from __future__ import annotations

import sqlite3
import uuid
from datetime import datetime, timedelta
from typing import Any

import aiosqlite

from gateway.core.aggregation import ServiceRequestState
from gateway.store.callbacks import Settlement
from gateway.store.requests_flow import RequestsFlow
from gateway.store.rows import (
    SERVICE_REQUEST_COLUMNS,
    Row,
    service_request_of,
    sqlite_time,
    sqlite_time_or_none,
)
from gateway.store.service_requests import (
    MessageLink,
    ServiceRequestRecord,
    next_deadline_of,
    not_found,
    part_links,
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
    callback_next_at = CASE WHEN ?1 AND callback_state = 'pending' THEN coalesce(?10, ?5)
        ELSE callback_next_at END,
    callback_attempts = CASE WHEN ?1 AND callback_state = 'pending' AND ?10 IS NOT NULL
        THEN callback_attempts + 1 ELSE callback_attempts END
WHERE id = ?7 AND version = ?8 AND service = ?9
RETURNING {_COLUMNS}
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


class SqliteServiceRequests(RequestsFlow[aiosqlite.Connection]):
    """The :class:`~gateway.store.base.ServiceRequests` on a :class:`SqliteDatabase`."""

    database: SqliteDatabase

    async def _create(
        self,
        connection: aiosqlite.Connection,
        record: ServiceRequestRecord,
        values: tuple[Any, ...],
    ) -> bool:
        callback = record.callback
        created = await self.database.fetch_one(
            connection,
            _CREATE,
            *values,
            sqlite_time_or_none(record.next_deadline),
            sqlite_time(record.created_at),
            sqlite_time(record.created_at),
            None if callback is None else callback.url,
            None if callback is None else callback.state.value,
            None if callback is None else sqlite_time_or_none(callback.next_attempt_at),
            record.request_digest,
        )
        if created is None:
            return False
        await _link_parts(connection, record.state)
        return True

    async def _save(
        self,
        connection: aiosqlite.Connection,
        state: ServiceRequestState,
        expected_version: int,
        at: datetime,
        claim_callback_until: datetime | None = None,
    ) -> Row | None:
        row = await self.database.fetch_one(
            connection,
            _SAVE,
            int(state.final),
            state.status.value,
            None if state.completed_by is None else state.completed_by.value,
            state.model_dump_json(),
            sqlite_time(at),
            sqlite_time_or_none(next_deadline_of(state)),
            str(state.id),
            expected_version,
            state.service,
            sqlite_time_or_none(claim_callback_until),
        )
        if row is not None:
            await _link_parts(connection, state)
        return row

    async def save_in(
        self,
        connection: aiosqlite.Connection,
        state: ServiceRequestState,
        expected_version: int,
        at: datetime,
        claim_callback_until: datetime | None = None,
    ) -> Row | None:
        """``save`` inside the caller's transaction: the row saved (parts linked), None
        if the request is not at ``expected_version`` (or unknown); a callback it makes
        due claimed until ``claim_callback_until`` if given
        (:class:`~gateway.store.replies.ReplySave`)."""
        return await self._save(connection, state, expected_version, at, claim_callback_until)

    async def _link(
        self, connection: aiosqlite.Connection, message_id: str, wanted: MessageLink
    ) -> MessageLink | None:
        existing = await self._link_of(connection, message_id)
        if existing is None:
            sr_id = str(wanted.service_request_id)
            try:
                await connection.execute(_LINK, (message_id, sr_id, wanted.part_id))
            except sqlite3.IntegrityError:  # no such service request
                raise not_found(sr_id) from None
        return existing

    async def claim_callbacks(
        self, now: datetime, *, lease: timedelta, limit: int
    ) -> list[ServiceRequestRecord]:
        claimed: list[ServiceRequestRecord] = []
        async with self.database.writing() as connection:
            due = await connection.execute_fetchall(_DUE_CALLBACKS, (sqlite_time(now), limit))
            for candidate in due:
                row = await self.database.fetch_one(
                    connection, _CLAIM_CALLBACK, sqlite_time(now + lease), candidate["id"]
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


async def _link_parts(connection: aiosqlite.Connection, state: ServiceRequestState) -> None:
    """Link every sent part of ``state`` not linked yet (inside the caller's transaction)."""
    links = part_links(state)
    if links:
        await connection.executemany(
            _LINK, [(mid, str(state.id), part) for mid, part in sorted(links.items())]
        )
