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
* The implementations: :mod:`gateway.store.requests_pg` and
  :mod:`gateway.store.requests_sqlite`; this module holds the values they share.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import UTC, datetime

from gateway.core.aggregation import ServiceRequestState, next_deadline
from gateway.core.errors import InternalError, NotFound
from gateway.core.service_lifecycle import CompletedBy, ServiceState
from gateway.store.callbacks import Callback
from gateway.store.paging import encode_cursor
from gateway.store.records import MAX_PAGE_SIZE


class ServiceRequestConflict(InternalError):
    """Another writer saved the service request first (its version changed under us).

    Re-read it with :meth:`~gateway.store.base.ServiceRequests.get` and apply the event again to the
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
    """One page of ``ServiceRequests.find``; pass ``next_cursor`` as ``after``."""

    items: tuple[ServiceRequestRecord, ...]
    next_cursor: str | None


@dataclass(frozen=True, slots=True)
class MessageLink:
    """The service request and part a bus request (by MessageID) was sent for."""

    service_request_id: uuid.UUID
    part_id: str


@dataclass(frozen=True, slots=True)
class LinkedRequest:
    """The part a bus request was sent for, and its service request as read with it."""

    link: MessageLink
    record: ServiceRequestRecord


def next_deadline_of(state: ServiceRequestState) -> datetime | None:
    when = next_deadline(state)
    return None if when is None else when.astimezone(UTC)


def check_limit(limit: int) -> None:
    if not 1 <= limit <= MAX_PAGE_SIZE:
        raise ValueError(f"limit must be 1..{MAX_PAGE_SIZE}, got {limit}")


def lookup_id(sr_id: uuid.UUID | str) -> str:
    """The canonical id to look up; something that is not a UUID names no request."""
    try:
        return str(uuid.UUID(str(sr_id)))
    except ValueError:
        raise not_found(str(sr_id)) from None


def not_found(sr_id: str) -> NotFound:
    return NotFound(f"no service request {sr_id}", service_request_id=sr_id)


def conflict(sr_id: str, expected_version: int, version: int) -> ServiceRequestConflict:
    return ServiceRequestConflict(
        f"service request {sr_id} was saved by another writer "
        f"(expected version {expected_version}, stored {version}): re-read it",
        service_request_id=sr_id,
        expected_version=expected_version,
        version=version,
    )


def link_conflict(mid: str, existing: MessageLink) -> MessageLinkConflict:
    return MessageLinkConflict(
        f"MessageID {mid} is already linked to service request "
        f"{existing.service_request_id} part {existing.part_id!r}",
        message_id=mid,
        service_request_id=str(existing.service_request_id),
        part_id=existing.part_id,
    )


def part_links(state: ServiceRequestState) -> dict[str, str]:
    """MessageID -> part id of every part of ``state`` that was sent."""
    return {str(p.message_id): p.id for p in state.parts if p.message_id is not None}


def requests_page(rows: list[ServiceRequestRecord], limit: int) -> ServiceRequestPage:
    """The page of ``limit`` rows of ``rows`` (one more than asked, if there are more)."""
    items = tuple(rows[:limit])
    more = len(rows) > limit
    cursor = encode_cursor(items[-1].created_at, str(items[-1].id)) if more else None
    return ServiceRequestPage(items=items, next_cursor=cursor)
