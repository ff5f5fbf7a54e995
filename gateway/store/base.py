"""The ``Store`` protocol: what the router, adapters and ops tools may ask of the journal.

Semantics every implementation keeps (the one test suite checks them on SQLite and
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
* timestamps are always handed in (``at``); the store never reads a clock. Stored and
  returned datetimes are timezone-aware UTC.
* ``remember`` is the replay guard's memory, shared by every process on the database:
  of any number of calls with one digest (at once, from any processes) exactly one
  gets True until the digest is forgotten, which happens some time after its
  ``expires_at`` and never before.
"""

from __future__ import annotations

from datetime import datetime
from typing import Protocol

from gateway.core.lifecycle import IllegalTransition, MessageState
from gateway.store.records import (
    AcceptResult,
    MessageRecord,
    NewMessage,
    Page,
    TransitionRecord,
)

DEFAULT_PAGE_SIZE = 100
MAX_PAGE_SIZE = 1000


class TransitionConflict(IllegalTransition):
    """Another writer moved the message first (its version changed under us).

    Re-read the message and decide again; retrying the same move blindly would
    duplicate a business step.
    """

    code = "internal"


class Store(Protocol):
    async def migrate(self) -> None:
        """Bring the schema to the newest revision; safe to call any number of times."""
        ...

    async def close(self) -> None: ...

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
        message first.
        Raises :class:`~gateway.core.errors.NotFound` for an unknown id.
        """
        ...

    async def claim_answer(self, request_id: str, response_id: str) -> bool:
        """Name ``response_id`` the final answer of request ``request_id``, atomically.

        True if it now is (first claim, or the same answer claimed again: a retry);
        False if another answer holds the claim, or ``request_id`` is no request.
        """
        ...

    async def get(self, message_id: str) -> MessageRecord:
        """Raises :class:`~gateway.core.errors.NotFound` for an unknown id."""
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
