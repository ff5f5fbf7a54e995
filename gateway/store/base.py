"""The stores' protocols: what the router, the aggregator, adapters and ops tools may ask.

:class:`Journal` (the message journal, also named ``Store``) and
:class:`ServiceRequests` (the aggregator's state and the result-callback outbox) live
on one database; :func:`gateway.store.open_stores` opens both, on PostgreSQL
(:mod:`gateway.store.pg`, asyncpg) or SQLite (:mod:`gateway.store.sqlite`, aiosqlite).
Callers depend on these protocols only.

Semantics every implementation keeps (one test suite checks them on SQLite and
PostgreSQL alike):

* ``accept`` is idempotent per MessageID: the same id with the same content hash is
  a no-op that returns ``DUPLICATE``; the same id with other content raises
  :class:`~gateway.core.errors.MessageAlreadySent`.
* ``transition`` moves a message only along :data:`gateway.core.lifecycle.TRANSITIONS`
  and is a compare-and-set on the message's ``version``: of two concurrent identical
  moves exactly one succeeds. The loser gets :class:`TransitionConflict` if it read
  the message before the winner committed, or :class:`IllegalTransition` if after
  (``X -> X`` is never legal). Both are ``IllegalTransition``, so catching that covers
  every refused move. A repeated transition is therefore *not* idempotent: the
  journal records each real move once, and the caller learns it lost.
* every write is one transaction, and a move returns the message without its body.
* timestamps are always handed in (``at``); the store never reads a clock. Stored and
  returned datetimes are timezone-aware UTC.
* ``remember`` is the replay guard's memory, shared by every process on the database:
  of any number of calls with one digest (at once, from any processes) exactly one
  gets True until the digest is forgotten, which happens some time after its
  ``expires_at`` and never before.
"""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from contextlib import AbstractAsyncContextManager
from datetime import datetime, timedelta
from types import TracebackType
from typing import Protocol, Self

from gateway.core.aggregation import ServiceRequestState
from gateway.core.lifecycle import IllegalTransition, MessageState
from gateway.core.service_lifecycle import ServiceState
from gateway.store.callbacks import Settlement
from gateway.store.records import (
    DEFAULT_PAGE_SIZE,
    MAX_PAGE_SIZE,
    AcceptResult,
    Acknowledged,
    Answered,
    MessageRecord,
    NewMessage,
    Page,
    TransitionRecord,
)
from gateway.store.replies import AlongReply, ReplySave, ReplyTaken
from gateway.store.service_requests import (
    LinkedRequest,
    ServiceRequestPage,
    ServiceRequestRecord,
)

__all__ = [
    "DEFAULT_PAGE_SIZE",
    "MAX_PAGE_SIZE",
    "Journal",
    "ServiceRequests",
    "Store",
    "TransitionConflict",
]


class TransitionConflict(IllegalTransition):
    """Another writer moved the message first (its version changed under us).

    Re-read the message and decide again; retrying the same move blindly would
    duplicate a business step. ``record``, when the store could tell it in the same
    statement, is the message as the refused move's statement saw it (its body left
    out): that read is done. It may predate a concurrent move that won while the
    statement waited for it (PostgreSQL reads it in the statement's snapshot): a
    record still in the expected state at the expected version is such a one.
    """

    code = "internal"
    record: MessageRecord | None = None


class Closing:
    """``async with store:`` closes it at the end."""

    async def close(self) -> None:
        raise NotImplementedError

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.close()


class PullWindow(Protocol):
    """A signed pull remembered (:meth:`Journal.pull`)."""

    @property
    def first(self) -> bool:
        """True if the pull was new; False for a replay (then deliver nothing)."""
        ...


class Journal(Protocol):
    async def __aenter__(self) -> Self: ...

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None: ...

    async def migrate(self) -> None:
        """Bring the schema to the newest revision; safe to call any number of times."""
        ...

    async def close(self) -> None:
        """Close the database (shared with :meth:`service_requests`); idempotent."""
        ...

    def service_requests(self) -> ServiceRequests:
        """The service-request store on this journal's database (closed with it)."""
        ...

    async def accept(
        self,
        message: NewMessage,
        *,
        at: datetime,
        reason: str | None = None,
        actor: str | None = None,
    ) -> AcceptResult:
        """Journal ``message`` as ``ACCEPTED`` (created at ``at``) with its first transition."""
        ...

    async def transition(
        self,
        message_id: str,
        to_state: MessageState,
        *,
        at: datetime,
        reason: str | None = None,
        actor: str | None = None,
        expected_version: int | None = None,
        expected_state: MessageState | None = None,
    ) -> MessageRecord:
        """Move the message to ``to_state``; return it as it stands after the move.

        ``expected_version`` makes the move conditional on the version the caller
        last saw (raises :class:`TransitionConflict` if it moved since).
        ``expected_state`` makes it conditional on the message being in that state
        (with ``expected_version``: the state at that version), raising
        :class:`TransitionConflict` otherwise; the store then need not read the
        message first, and the move is one statement whether it succeeds or not.
        Raises :class:`~gateway.core.errors.NotFound` for an unknown id.
        """
        ...

    async def deliver(
        self,
        message_id: str,
        *,
        at: datetime,
        reason: str | None,
        queued_reason: str | None,
        actor: str | None = None,
    ) -> MessageRecord:
        """A consumer was handed the message: QUEUED -> DELIVERED (``reason``), or, if
        its publisher has not journaled the broker's confirm yet, ACCEPTED -> QUEUED
        (``queued_reason``) -> DELIVERED; one write either way. Raises
        :class:`TransitionConflict` (with the record as found) from any other state,
        ``NotFound`` for an unknown id."""
        ...

    async def acknowledge(
        self, message_id: str, *, at: datetime, reason: str | None = None, actor: str | None = None
    ) -> Acknowledged:
        """An Ack: move the message DELIVERED -> ACKED if it is DELIVERED; for a response
        that is its request's claimed final answer, move the request RESPONDED ->
        RESPONSE_DELIVERED in the same transaction. A message in another state is left
        as it is (``moved`` False). Raises ``NotFound`` for an unknown id."""
        ...

    async def take_reply(
        self,
        message_id: str,
        save: ReplySave | None,
        *,
        at: datetime,
        reason: str | None,
        queued_reason: str | None,
        actor: str | None = None,
        along: Sequence[AlongReply] = (),
    ) -> ReplyTaken:
        """A response pushed to an in-process subscriber is done with, in one write
        (:mod:`gateway.store.replies`): from ACCEPTED, QUEUED or DELIVERED to ACKED,
        each step journaled (``queued_reason`` on ACCEPTED -> QUEUED, ``reason`` on
        QUEUED -> DELIVERED), its request settled as :meth:`acknowledge` settles it,
        and ``save`` (if given) stored as :meth:`ServiceRequests.save` stores it, all
        or nothing; with a save, the responses ``along`` (other ids, each once) that
        are in a state a response is taken from are taken in the same write, and named
        in the result. ``CONFLICT``: the service request is not at ``save.expected_version``
        (or unknown); ``NOT_TAKEN``: the response is in another state; either way
        nothing is written. Raises ``NotFound`` for an unknown response."""
        ...

    async def answer(
        self,
        response: NewMessage,
        *,
        final: bool,
        at: datetime,
        actor: str | None = None,
        seen: MessageRecord | None = None,
    ) -> Answered:
        """SendResponse's writes, in one transaction.

        For a ``final`` answer, claim the request (``response.in_reply_to``) for it (as
        :meth:`claim_answer`); if another answer holds the claim, write nothing
        (``result`` None). Then accept ``response`` as :meth:`accept` does, and move
        the request from the state it is in *now* towards RESPONDED (final) or
        DELIVERED (interim), each step journaled: a request answered before its sender
        journaled it QUEUED, or answered by a push provider, ends in its true state.
        Raises ``NotFound`` for an unknown request.

        ``seen``, the request as the caller just read it, lets a backend write all of
        this in one statement while the request is still so (the usual case); the
        outcome is the same either way.
        """
        ...

    async def claim_answer(self, request_id: str, response_id: str) -> bool:
        """Name ``response_id`` the final answer of request ``request_id``, atomically.

        True if it now is (first claim, or the same answer claimed again: a retry);
        False if another answer holds the claim, or ``request_id`` is no request.
        """
        ...

    async def get(self, message_id: str) -> MessageRecord:
        """The message with its body. Raises ``NotFound`` for an unknown id."""
        ...

    async def history(self, message_id: str) -> list[TransitionRecord]:
        """Every transition, oldest first. Raises ``NotFound`` for an unknown id."""
        ...

    async def find(
        self,
        *,
        sender: str | None = None,
        recipient: str | None = None,
        state: MessageState | None = None,
        since: datetime | None = None,
        limit: int = DEFAULT_PAGE_SIZE,
        after: str | None = None,
    ) -> Page:
        """Messages matching every given filter, oldest first (``created_at >= since``).

        Keyset-paged: ``after`` is the ``next_cursor`` of the previous page. Raises
        ``ValueError`` for a ``limit`` outside 1..MAX_PAGE_SIZE or a malformed cursor.
        """
        ...

    async def responses_to(self, request_id: str) -> list[MessageRecord]:
        """Responses whose ``in_reply_to`` is ``request_id``, oldest first (maybe none)."""
        ...

    async def remember(
        self, digest: str, participant: str, *, expires_at: datetime, now: datetime
    ) -> bool:
        """Remember ``digest`` (a signed request of ``participant``) until ``expires_at``.

        True the first time; False while it is remembered (a replay). One statement;
        now and then (``now`` says when) a second one forgets what expired.
        """
        ...

    def pull(
        self, digest: str, participant: str, *, expires_at: datetime, now: datetime
    ) -> AbstractAsyncContextManager[PullWindow]:
        """``remember`` a signed pull on entry, for the delivery it makes in the block.

        Inside the block, ``first`` says whether the digest was new (as ``remember``);
        the block takes the message from the queue and journals it (:meth:`deliver`).
        No transaction spans the block: the digest and the delivery are written each
        in its own (one statement on PostgreSQL), and if the block raises, the digest
        is forgotten again, so that the same signed pull is served when it comes back
        (a delivery the block journaled before it raised stays journaled)."""
        ...


#: The journal's former name; the same protocol.
Store = Journal


class ServiceRequests(Protocol):
    """Service requests and their result callbacks (see :mod:`gateway.store.service_requests`)."""

    async def __aenter__(self) -> Self: ...

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None: ...

    async def migrate(self) -> None: ...

    async def close(self) -> None:
        """Close the database (shared with the journal); idempotent."""
        ...

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
        created a request under ``idempotency_key`` (the first request's
        ``callback_url`` and ``request_digest`` stand too). ``callback_url`` is stored
        as given: the caller checks it.
        """
        ...

    async def save(
        self, state: ServiceRequestState, expected_version: int, *, at: datetime
    ) -> ServiceRequestRecord:
        """Store ``state`` if the stored version is still ``expected_version``.

        Returns the record at ``expected_version + 1``. Raises ``NotFound`` for an
        unknown id and ``ServiceRequestConflict`` when another writer saved first.
        Part MessageIDs not linked yet are linked in the same transaction. A final
        ``state`` makes a ``pending`` callback ``due`` at ``at``, in the same ``UPDATE``.
        """
        ...

    async def link_message(
        self, message_id: str | uuid.UUID, sr_id: uuid.UUID, part_id: str
    ) -> None:
        """Correlate a bus request's MessageID with the part it was sent for.

        Linking the same triple again is a no-op; linking a MessageID that already
        belongs elsewhere raises ``MessageLinkConflict``, and an unknown service
        request ``NotFound``.
        """
        ...

    async def get(self, sr_id: uuid.UUID | str) -> ServiceRequestRecord: ...

    async def by_message(self, message_id: str | uuid.UUID) -> LinkedRequest | None:
        """The service request and part a reply's ``in_reply_to`` MessageID belongs to,
        with the request's record (one read)."""
        ...

    async def pending(self) -> list[ServiceRequestRecord]:
        """Every ``PENDING`` request, oldest first (to resume after a restart)."""
        ...

    async def pending_due(
        self, now: datetime, limit: int = DEFAULT_PAGE_SIZE
    ) -> list[ServiceRequestRecord]:
        """``PENDING`` requests whose next deadline is at or before ``now``, earliest first."""
        ...

    async def next_due(self) -> datetime | None:
        """The earliest next deadline of any ``PENDING`` request (how long to sleep)."""
        ...

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
        ...

    # --- the result-callback outbox (gateway.store.callback_outbox) ---------------------

    async def claim_callbacks(
        self, now: datetime, *, lease: timedelta, limit: int
    ) -> list[ServiceRequestRecord]:
        """Claim up to ``limit`` callbacks due at ``now`` (see ``CallbackOutbox.claim_due``)."""
        ...

    async def settle_callback(
        self, sr_id: uuid.UUID, attempt: int | None, settlement: Settlement
    ) -> bool:
        """Write ``settlement`` to a due callback, only while ``attempt`` is its latest
        attempt (any attempt for ``None``); False if nothing changed."""
        ...
