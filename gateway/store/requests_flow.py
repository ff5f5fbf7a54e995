"""The service-request store's operations written once: checks, reads, and what a
refused write means, over a backend's SQL and its
:class:`~gateway.store.database.Database`.

A backend (:mod:`gateway.store.requests_pg`, :mod:`gateway.store.requests_sqlite`)
names its SQL as class attributes and implements the writes its database does its
own way: ``_create``, ``_save``, ``_link``, ``claim_callbacks`` and ``settle_callback``.
"""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta
from typing import Any, Generic

from gateway.core.aggregation import ServiceRequestState
from gateway.core.errors import InvalidContent
from gateway.core.service_lifecycle import ServiceState
from gateway.store.base import Closing
from gateway.store.callbacks import MAX_CALLBACK_URL, Settlement, new_callback
from gateway.store.database import C, Database
from gateway.store.journal_rules import Filters
from gateway.store.records import (
    DEFAULT_PAGE_SIZE,
    canonical_message_id,
    require_aware,
    require_name,
)
from gateway.store.rows import (
    S_SERVICE_REQUEST_COLUMNS,
    SERVICE_REQUEST_COLUMNS,
    Row,
    service_request_of,
    utc,
)
from gateway.store.service_requests import (
    LinkedRequest,
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
    requests_page,
)


class RequestsFlow(Closing, Generic[C]):
    """The :class:`~gateway.store.base.ServiceRequests` on a database with connections
    ``C``. The SQL is written once with ``$n`` parameters (:meth:`Database.sql` puts
    them in the backend's form)."""

    BY_ID = f"SELECT {SERVICE_REQUEST_COLUMNS} FROM service_requests WHERE id = $1"
    BY_KEY = (
        f"SELECT {SERVICE_REQUEST_COLUMNS} FROM service_requests "
        "WHERE participant = $1 AND idempotency_key = $2"
    )
    LINK_OF = (
        "SELECT service_request_id, part_id FROM service_request_messages WHERE message_id = $1"
    )
    LINKED = f"""
SELECT m.part_id, {S_SERVICE_REQUEST_COLUMNS}
FROM service_request_messages AS m JOIN service_requests AS s ON s.id = m.service_request_id
WHERE m.message_id = $1
"""
    PENDING = (
        f"SELECT {SERVICE_REQUEST_COLUMNS} FROM service_requests WHERE status = 'PENDING' "
        "ORDER BY created_at, id"
    )
    PENDING_DUE = f"""
SELECT {SERVICE_REQUEST_COLUMNS} FROM service_requests
WHERE status = 'PENDING' AND next_deadline IS NOT NULL AND next_deadline <= $1
ORDER BY next_deadline, id LIMIT $2
"""
    NEXT_DUE = """
SELECT next_deadline FROM service_requests
WHERE status = 'PENDING' AND next_deadline IS NOT NULL ORDER BY next_deadline LIMIT 1
"""

    def __init__(self, database: Database[C]) -> None:
        self.database = database

    async def migrate(self) -> None:
        await self.database.migrate()

    async def close(self) -> None:
        await self.database.close()

    # --- what a backend does its own way ---------------------------------------------------

    async def _create(
        self, connection: C, record: ServiceRequestRecord, values: tuple[Any, ...]
    ) -> bool:
        """Insert ``record`` (``values``: id, service, participant, idempotency key,
        status, completed_by, state JSON) and link its sent parts; False if its key
        or id is taken."""
        raise NotImplementedError

    async def _save(
        self, connection: C, state: ServiceRequestState, expected_version: int, at: datetime
    ) -> Row | None:
        """The row saved at ``expected_version + 1`` (parts linked), None if refused."""
        raise NotImplementedError

    async def _link(
        self, connection: C, message_id: str, wanted: MessageLink
    ) -> MessageLink | None:
        """Link ``message_id`` as ``wanted`` unless it is linked already: then the link
        it has. ``NotFound`` for an unknown service request."""
        raise NotImplementedError

    async def claim_callbacks(
        self, now: datetime, *, lease: timedelta, limit: int
    ) -> list[ServiceRequestRecord]:
        raise NotImplementedError

    async def settle_callback(
        self, sr_id: uuid.UUID, attempt: int | None, settlement: Settlement
    ) -> bool:
        raise NotImplementedError

    # --- the operations ----------------------------------------------------------------------

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
        record = ServiceRequestRecord(
            state=state,
            participant=participant,
            idempotency_key=idempotency_key,
            next_deadline=next_deadline_of(state),
            created_at=created_at,
            updated_at=created_at,
            version=1,
            callback=new_callback(callback_url, state, created_at),
            request_digest=request_digest,
        )
        values = (
            str(state.id),
            state.service,
            participant,
            idempotency_key,
            state.status.value,
            None if state.completed_by is None else state.completed_by.value,
            state.model_dump_json(),
        )
        async with self.database.writing() as connection:
            if await self._create(connection, record, values):
                return record, True
            # The key was used first (maybe by a concurrent POST), or the id is taken.
            if idempotency_key is not None:
                row = await self._one(
                    connection,
                    self.BY_KEY,
                    participant,
                    idempotency_key,
                )
                if row is not None:
                    return service_request_of(row), False
            row = await self._one(connection, self.BY_ID, str(state.id))
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
            row = await self._save(connection, state, expected_version, at)
            if row is not None:
                return service_request_of(row)
            current = await self._one(connection, self.BY_ID, sr_id)
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
            existing = await self._link(connection, mid, wanted)
        if existing is not None and existing != wanted:
            raise link_conflict(mid, existing)

    async def get(self, sr_id: uuid.UUID | str) -> ServiceRequestRecord:
        key = lookup_id(sr_id)
        async with self.database.reading() as connection:
            row = await self._one(connection, self.BY_ID, key)
        if row is None:
            raise not_found(str(sr_id))
        return service_request_of(row)

    async def by_message(self, message_id: str | uuid.UUID) -> LinkedRequest | None:
        try:
            mid = canonical_message_id(str(message_id))
        except InvalidContent:
            return None
        async with self.database.reading() as connection:
            row = await self._one(connection, self.LINKED, mid)
        if row is None:
            return None
        record = service_request_of(row)
        return LinkedRequest(MessageLink(record.id, row["part_id"]), record)

    async def pending(self) -> list[ServiceRequestRecord]:
        return await self._select(self.PENDING)

    async def pending_due(
        self, now: datetime, limit: int = DEFAULT_PAGE_SIZE
    ) -> list[ServiceRequestRecord]:
        require_aware("now", now)
        check_limit(limit)
        return await self._select(self.PENDING_DUE, self.database.time(now), limit)

    async def next_due(self) -> datetime | None:
        async with self.database.reading() as connection:
            row = await self._one(connection, self.NEXT_DUE)
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
        filters = Filters(self.database.param, self.database.time)
        filters.equal("status", None if status is None else ServiceState(status).value)
        filters.equal("service", service)
        filters.equal("participant", participant)
        filters.at_least("created_at", since)
        filters.after("created_at", "id", after)
        sql = (
            f"SELECT {SERVICE_REQUEST_COLUMNS} FROM service_requests {filters.where()} "
            f"ORDER BY created_at, id LIMIT {filters.param(limit + 1)}"
        )
        return requests_page(await self._select(sql, *filters.values), limit)

    async def _one(self, connection: C, sql: str, *args: Any) -> Row | None:
        """One row of ``sql`` (written with ``$n`` parameters) on ``connection``."""
        return await self.database.fetch_one(connection, self.database.sql(sql), *args)

    async def _select(self, sql: str, *args: Any) -> list[ServiceRequestRecord]:
        async with self.database.reading() as connection:
            rows = await self.database.fetch_all(connection, self.database.sql(sql), *args)
        return [service_request_of(row) for row in rows]

    async def _link_of(self, connection: C, message_id: str) -> MessageLink | None:
        row = await self._one(connection, self.LINK_OF, message_id)
        if row is None:
            return None
        return MessageLink(uuid.UUID(row["service_request_id"]), row["part_id"])
