"""Durable service requests: the aggregator's state, shared by any number of processes.

One row per service request holds its serialized
:class:`~gateway.core.aggregation.ServiceRequestState` (JSONB on PostgreSQL, JSON text
on SQLite) next to copies of ``status``, ``completed_by`` and the next deadline
(:func:`~gateway.core.aggregation.next_deadline`) kept in columns for queries; a
second table maps each part's bus MessageID to its service request and part, so a
reply correlates without loading every request.

How the guarantees are kept, identically on SQLite and PostgreSQL:

* ``create`` is idempotent per ``(participant, idempotency_key)``: the unique
  constraint settles a race between two identical POSTs, and the loser gets the
  winner's record with ``created=False``. The *first* request with a key wins; the
  store keeps the digest of its body (``request_digest``,
  :func:`gateway.core.idempotency.request_digest`) so that the caller can tell a
  retry from another request reusing the key (rows from before migration 0005 have
  none).
  Without a key every ``create`` is a new request (a repeated id with the same
  participant and service is returned as the existing one).
* ``save`` is a compare-and-set: ``UPDATE ... WHERE id = ? AND version = ?``. Of two
  aggregator processes saving from the same version exactly one wins; the other gets
  :class:`ServiceRequestConflict` and must re-read (``get``) and re-apply its event to
  the fresh state. ``save`` also links, in the same transaction, the MessageID of
  every part that has one, so a reply can never arrive for a request that was sent
  but not yet correlatable.
* ``pending`` (every ``PENDING`` request, for resuming after a restart) and
  ``pending_due`` (those whose next deadline is at or before ``now``) drive the
  deadline timer; a final request has no next deadline.
* A request may carry a result callback (``callback_url``). Its outbox state lives in
  the request's row: ``pending`` until final; the ``save`` that stores the final state
  marks it ``due`` in the same ``UPDATE``, so a crash can never lose a due callback.
  :class:`~gateway.store.callback_outbox.CallbackOutbox` claims and settles due callbacks
  without touching ``version`` (a callback never conflicts with the aggregator).
* Timestamps are always handed in; stored and returned datetimes are aware UTC.
* On SQLite the store serializes its own operations with an asyncio lock (pass the
  journal's lock when sharing an in-memory engine with it, see :meth:`for_journal`).
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from types import TracebackType
from typing import Any, Self

from sqlalchemy import URL, ColumnElement, Row, and_, insert, or_, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from gateway.core.aggregation import ServiceRequestState, next_deadline
from gateway.core.errors import InternalError, InvalidContent, NotFound
from gateway.core.service_lifecycle import CompletedBy, ServiceState
from gateway.store.base import DEFAULT_PAGE_SIZE, MAX_PAGE_SIZE
from gateway.store.callbacks import (
    MAX_CALLBACK_URL,
    Callback,
    callback_columns,
    callback_due,
    callback_of,
    new_callback,
)
from gateway.store.engine import autocommit, create_engine
from gateway.store.journal import SqlStore
from gateway.store.migrate import upgrade
from gateway.store.paging import decode_cursor, encode_cursor
from gateway.store.records import canonical_message_id, require_aware, require_name
from gateway.store.schema import service_request_messages, service_requests

_SR = service_requests
_LINKS = service_request_messages


class ServiceRequestConflict(InternalError):
    """Another writer saved the service request first (its version changed under us).

    Re-read it with :meth:`ServiceRequestStore.get` and apply the event again to the
    fresh state; saving the stale state would lose the other writer's change.
    """

    code = "internal"


class MessageLinkConflict(InternalError):
    """A MessageID is already linked to another service request or part."""

    code = "internal"


@dataclass(frozen=True, slots=True)
class ServiceRequestRecord:
    """A stored service request: its state plus what the store keeps around it."""

    state: ServiceRequestState
    #: The calling portal (registered participant) that submitted it.
    participant: str
    idempotency_key: str | None
    #: When the deadline timer must next look at it; ``None`` once final.
    next_deadline: datetime | None
    created_at: datetime
    updated_at: datetime
    version: int
    #: The result callback, if the request was submitted with a ``callback_url``.
    callback: Callback | None = None
    #: SHA-256 of the submitted body (:func:`gateway.core.idempotency.request_digest`);
    #: ``None`` for requests stored before it was kept.
    request_digest: str | None = None

    @property
    def id(self) -> uuid.UUID:
        return self.state.id

    @property
    def service(self) -> str:
        return self.state.service

    @property
    def status(self) -> ServiceState:
        return self.state.status

    @property
    def completed_by(self) -> CompletedBy | None:
        return self.state.completed_by


@dataclass(frozen=True, slots=True)
class ServiceRequestPage:
    """One page of :meth:`ServiceRequestStore.find`; pass ``next_cursor`` as ``after``."""

    items: tuple[ServiceRequestRecord, ...]
    next_cursor: str | None


@dataclass(frozen=True, slots=True)
class MessageLink:
    """The service request and part a bus request (by MessageID) was sent for."""

    service_request_id: uuid.UUID
    part_id: str


class ServiceRequestStore:
    """Service request state on an async SQLAlchemy engine (the journal's, or its own)."""

    def __init__(self, engine: AsyncEngine, *, lock: asyncio.Lock | None = None) -> None:
        self._engine = engine
        if lock is None and engine.dialect.name == "sqlite":
            lock = asyncio.Lock()
        self._lock = lock
        self._reads = autocommit(engine)

    @classmethod
    def from_url(cls, url: str | URL, *, schema: str | None = None) -> ServiceRequestStore:
        """A store on ``url`` (``sqlite:///smevbus.db``, ``postgresql://...``); not migrated."""
        return cls(create_engine(url, schema=schema))

    @classmethod
    def for_journal(cls, journal: SqlStore) -> ServiceRequestStore:
        """A store on the journal's engine (and, on SQLite, its lock). Closing it is a no-op
        for the engine's owner: close the journal, not this store."""
        return cls(journal.engine, lock=journal._lock)

    @property
    def engine(self) -> AsyncEngine:
        return self._engine

    async def migrate(self) -> None:
        async with self._serialized():
            await upgrade(self._engine)

    async def close(self) -> None:
        await self._engine.dispose()

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.close()

    # --- writes ---------------------------------------------------------------------

    async def create(
        self,
        state: ServiceRequestState,
        participant: str,
        idempotency_key: str | None = None,
        *,
        callback_url: str | None = None,
        request_digest: str | None = None,
    ) -> tuple[ServiceRequestRecord, bool]:
        """Store a new request (version 1, ``created_at`` = ``state.created_at``).

        Returns ``(record, True)``, or ``(existing, False)`` when ``participant`` already
        created a request under ``idempotency_key`` (see the module docstring; the first
        request's ``callback_url`` and ``request_digest`` stand too). ``callback_url``
        is stored as given: the caller checks it
        (:func:`gateway.aggregator.callback_url.check_callback_url`).
        """
        require_name("participant", participant)
        require_name("idempotency_key", idempotency_key)
        require_name("service", state.service)
        require_name("callback_url", callback_url, MAX_CALLBACK_URL)
        async with self._serialized():
            if idempotency_key is not None:
                existing = await self._by_key(participant, idempotency_key)
                if existing is not None:
                    return existing, False
            created_at = state.created_at.astimezone(UTC)
            callback = new_callback(callback_url, state, created_at)
            record = ServiceRequestRecord(
                state=state,
                participant=participant,
                idempotency_key=idempotency_key,
                next_deadline=_next_deadline(state),
                created_at=created_at,
                updated_at=created_at,
                version=1,
                callback=callback,
                request_digest=request_digest,
            )
            try:
                async with self._engine.begin() as conn:
                    await conn.execute(
                        insert(_SR).values(
                            id=str(state.id),
                            service=state.service,
                            participant=participant,
                            idempotency_key=idempotency_key,
                            created_at=record.created_at,
                            **_state_columns(state, record.updated_at, version=1),
                            **callback_columns(callback),
                            # named only when given, as the callback's columns
                            **(
                                {} if request_digest is None else {"request_digest": request_digest}
                            ),
                        )
                    )
                    await _link_parts(conn, state)
            except IntegrityError:
                # A concurrent POST with the same key won, or the id is taken.
                if idempotency_key is not None:
                    existing = await self._by_key(participant, idempotency_key)
                    if existing is not None:
                        return existing, False
                existing = await self._get_or_none(str(state.id))
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
                ) from None
            return record, True

    async def save(
        self, state: ServiceRequestState, expected_version: int, *, at: datetime
    ) -> ServiceRequestRecord:
        """Store ``state`` if the stored version is still ``expected_version``.

        Returns the record at ``expected_version + 1``. Raises :class:`NotFound` for an
        unknown id and :class:`ServiceRequestConflict` when another writer saved first.
        Part MessageIDs not linked yet are linked in the same transaction. A final
        ``state`` makes a ``pending`` callback ``due`` at ``at``, in the same ``UPDATE``.
        """
        require_aware("at", at)
        sr_id = str(state.id)
        async with self._serialized():
            async with self._engine.begin() as conn:
                row = (
                    await conn.execute(
                        update(_SR)
                        .where(
                            _SR.c.id == sr_id,
                            _SR.c.version == expected_version,
                            _SR.c.service == state.service,
                        )
                        .values(
                            **_state_columns(state, at, version=expected_version + 1),
                            **(callback_due(at) if state.final else {}),
                        )
                        .returning(*_SR.c)
                    )
                ).one_or_none()
                if row is not None:
                    await _link_parts(conn, state)
            if row is not None:
                return record_of_row(row)
            current = await self._get_or_none(sr_id)
        if current is None:
            raise _not_found(sr_id)
        if current.service != state.service:
            raise ValueError(
                f"service request {sr_id} is a {current.service!r} request, not {state.service!r}"
            )
        raise ServiceRequestConflict(
            f"service request {sr_id} was saved by another writer "
            f"(expected version {expected_version}, stored {current.version}): re-read it",
            service_request_id=sr_id,
            expected_version=expected_version,
            version=current.version,
        )

    async def link_message(
        self, message_id: str | uuid.UUID, sr_id: uuid.UUID, part_id: str
    ) -> None:
        """Correlate a bus request's MessageID with the part it was sent for.

        Linking the same triple again is a no-op; linking a MessageID that already
        belongs elsewhere raises :class:`MessageLinkConflict`, and an unknown service
        request :class:`NotFound`. (``save`` links part MessageIDs by itself.)
        """
        mid = canonical_message_id(str(message_id))
        require_name("part_id", part_id)
        wanted = MessageLink(uuid.UUID(str(sr_id)), part_id)
        async with self._serialized():
            try:
                async with self._engine.begin() as conn:
                    await conn.execute(
                        insert(_LINKS).values(
                            message_id=mid,
                            service_request_id=str(wanted.service_request_id),
                            part_id=part_id,
                        )
                    )
                return
            except IntegrityError:
                existing = await self._link(mid)
        if existing is None:
            raise _not_found(str(sr_id))
        if existing != wanted:
            raise MessageLinkConflict(
                f"MessageID {mid} is already linked to service request "
                f"{existing.service_request_id} part {existing.part_id!r}",
                message_id=mid,
                service_request_id=str(existing.service_request_id),
                part_id=existing.part_id,
            )

    # --- reads ----------------------------------------------------------------------

    async def get(self, sr_id: uuid.UUID | str) -> ServiceRequestRecord:
        key = _lookup_id(sr_id)
        async with self._serialized():
            record = await self._get_or_none(key)
        if record is None:
            raise _not_found(str(sr_id))
        return record

    async def by_message(self, message_id: str | uuid.UUID) -> MessageLink | None:
        """The service request and part a reply's ``in_reply_to`` MessageID belongs to."""
        try:
            mid = canonical_message_id(str(message_id))
        except InvalidContent:
            return None
        async with self._serialized():
            return await self._link(mid)

    async def pending(self) -> list[ServiceRequestRecord]:
        """Every ``PENDING`` request, oldest first (to resume after a restart)."""
        query = (
            select(_SR)
            .where(_SR.c.status == ServiceState.PENDING.value)
            .order_by(_SR.c.created_at, _SR.c.id)
        )
        return await self._select(query)

    async def pending_due(
        self, now: datetime, limit: int = DEFAULT_PAGE_SIZE
    ) -> list[ServiceRequestRecord]:
        """``PENDING`` requests whose next deadline is at or before ``now``, earliest first."""
        require_aware("now", now)
        _check_limit(limit)
        query = (
            select(_SR)
            .where(
                _SR.c.status == ServiceState.PENDING.value,
                _SR.c.next_deadline.is_not(None),
                _SR.c.next_deadline <= now,
            )
            .order_by(_SR.c.next_deadline, _SR.c.id)
            .limit(limit)
        )
        return await self._select(query)

    async def next_due(self) -> datetime | None:
        """The earliest next deadline of any ``PENDING`` request (how long to sleep)."""
        query = select(_SR.c.next_deadline).where(
            _SR.c.status == ServiceState.PENDING.value, _SR.c.next_deadline.is_not(None)
        )
        query = query.order_by(_SR.c.next_deadline).limit(1)
        async with self._serialized(), self._reads.connect() as conn:
            value: datetime | None = (await conn.execute(query)).scalar_one_or_none()
        return value

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
        """Requests matching every given filter, oldest first, keyset-paged."""
        _check_limit(limit)
        require_aware("since", since)
        conditions: list[ColumnElement[bool]] = []
        if status is not None:
            conditions.append(_SR.c.status == ServiceState(status).value)
        if service is not None:
            conditions.append(_SR.c.service == service)
        if participant is not None:
            conditions.append(_SR.c.participant == participant)
        if since is not None:
            conditions.append(_SR.c.created_at >= since)
        if after is not None:
            last_at, last_id = decode_cursor(after)
            conditions.append(
                or_(
                    _SR.c.created_at > last_at,
                    and_(_SR.c.created_at == last_at, _SR.c.id > last_id),
                )
            )
        query = select(_SR).where(*conditions).order_by(_SR.c.created_at, _SR.c.id).limit(limit + 1)
        rows = await self._select(query)
        items = tuple(rows[:limit])
        more = len(rows) > limit
        cursor = encode_cursor(items[-1].created_at, str(items[-1].id)) if more else None
        return ServiceRequestPage(items=items, next_cursor=cursor)

    # --- internals ------------------------------------------------------------------

    @asynccontextmanager
    async def _serialized(self) -> AsyncIterator[None]:
        if self._lock is None:
            yield
            return
        async with self._lock:
            yield

    async def _select(self, query: Any) -> list[ServiceRequestRecord]:
        async with self._serialized(), self._reads.connect() as conn:
            rows: Sequence[Row[Any]] = (await conn.execute(query)).all()
        return [record_of_row(row) for row in rows]

    async def _get_or_none(self, sr_id: str) -> ServiceRequestRecord | None:
        async with self._reads.connect() as conn:
            row = (await conn.execute(select(_SR).where(_SR.c.id == sr_id))).one_or_none()
        return None if row is None else record_of_row(row)

    async def _by_key(self, participant: str, key: str) -> ServiceRequestRecord | None:
        query = select(_SR).where(_SR.c.participant == participant, _SR.c.idempotency_key == key)
        async with self._reads.connect() as conn:
            row = (await conn.execute(query)).one_or_none()
        return None if row is None else record_of_row(row)

    async def _link(self, mid: str) -> MessageLink | None:
        query = select(_LINKS.c.service_request_id, _LINKS.c.part_id).where(
            _LINKS.c.message_id == mid
        )
        async with self._reads.connect() as conn:
            row = (await conn.execute(query)).one_or_none()
        if row is None:
            return None
        return MessageLink(uuid.UUID(row.service_request_id), row.part_id)


async def _link_parts(conn: AsyncConnection, state: ServiceRequestState) -> None:
    """Link every part MessageID of ``state`` that is not linked yet (inside ``conn``'s
    transaction, which holds the request's row, so no other save races it)."""
    sent = {str(p.message_id): p.id for p in state.parts if p.message_id is not None}
    if not sent:
        return
    linked = set(
        (
            await conn.execute(
                select(_LINKS.c.message_id).where(_LINKS.c.message_id.in_(sorted(sent)))
            )
        ).scalars()
    )
    missing = [
        {"message_id": mid, "service_request_id": str(state.id), "part_id": part}
        for mid, part in sorted(sent.items())
        if mid not in linked
    ]
    if missing:
        await conn.execute(insert(_LINKS), missing)


def _state_columns(state: ServiceRequestState, at: datetime, *, version: int) -> dict[str, Any]:
    return {
        "status": state.status.value,
        "completed_by": None if state.completed_by is None else state.completed_by.value,
        "state": state.model_dump(mode="json"),
        "next_deadline": _next_deadline(state),
        "updated_at": at,
        "version": version,
    }


def _next_deadline(state: ServiceRequestState) -> datetime | None:
    when = next_deadline(state)
    return None if when is None else when.astimezone(UTC)


def _check_limit(limit: int) -> None:
    if not 1 <= limit <= MAX_PAGE_SIZE:
        raise ValueError(f"limit must be 1..{MAX_PAGE_SIZE}, got {limit}")


def _lookup_id(sr_id: uuid.UUID | str) -> str:
    try:
        return str(uuid.UUID(str(sr_id)))
    except ValueError:
        raise _not_found(str(sr_id)) from None


def _not_found(sr_id: str) -> NotFound:
    return NotFound(f"no service request {sr_id}", service_request_id=sr_id)


def record_of_row(row: Row[Any]) -> ServiceRequestRecord:
    """The record a whole ``service_requests`` row stands for."""
    m = row._mapping
    return ServiceRequestRecord(
        state=ServiceRequestState.model_validate(m["state"]),
        participant=m["participant"],
        idempotency_key=m["idempotency_key"],
        next_deadline=m["next_deadline"],
        created_at=m["created_at"],
        updated_at=m["updated_at"],
        version=int(m["version"]),
        callback=callback_of(m),
        request_digest=m["request_digest"],
    )
