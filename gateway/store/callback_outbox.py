"""The result-callback outbox: claim due callbacks, settle each attempt.

Every write is a conditional ``UPDATE`` of the request's ``callback_*`` columns, so
any number of gateway processes can deliver side by side, identically on SQLite and
PostgreSQL:

* :meth:`CallbackOutbox.claim_due` claims a due callback by counting its next attempt
  *and* pushing ``next_attempt_at`` forward by a lease, on the condition that nobody
  did so since it was read (``attempts`` unchanged, still due by ``now``). Of two
  processes claiming the same callback exactly one wins the attempt; if the winner
  dies mid-POST the lease runs out and the callback is claimed again (at-least-once).
* :meth:`~CallbackOutbox.retry` and :meth:`~CallbackOutbox.fail` settle attempt ``n``
  only while it is still the latest attempt: a process whose lease ran out cannot
  push back a newer one. :meth:`~CallbackOutbox.delivered` settles any attempt: a 2xx
  is the truth, whoever got it.

None of these touch the request's ``version``, ``status`` or ``state``: a callback
never conflicts with the aggregator and never changes a result.
"""

from __future__ import annotations

import uuid
from datetime import datetime, timedelta

from gateway.store.base import ServiceRequests
from gateway.store.callbacks import CallbackState, Settlement
from gateway.store.records import require_aware
from gateway.store.service_requests import ServiceRequestRecord


class CallbackOutbox:
    """Due result callbacks of a service-request store."""

    def __init__(self, store: ServiceRequests) -> None:
        self._store = store

    async def claim_due(
        self, now: datetime, *, lease: timedelta, limit: int = 16
    ) -> list[ServiceRequestRecord]:
        """Claim up to ``limit`` callbacks due at ``now``, earliest first.

        Each returned record's callback shows the claimed attempt: ``attempts`` counts
        it and ``next_attempt_at`` is ``now + lease``, when another process may claim it
        again unless it is settled first. Callbacks claimed elsewhere meanwhile are
        skipped.
        """
        require_aware("now", now)
        if limit < 1:
            raise ValueError(f"limit must be at least 1, got {limit}")
        return await self._store.claim_callbacks(now, lease=lease, limit=limit)

    async def delivered(self, sr_id: uuid.UUID, *, at: datetime) -> bool:
        """Mark the callback delivered at ``at``; False if it was not due any more."""
        require_aware("at", at)
        settlement = Settlement(None, state=CallbackState.DELIVERED, delivered_at=at)
        return await self._store.settle_callback(sr_id, None, settlement)

    async def retry(self, sr_id: uuid.UUID, attempt: int, *, error: str, at: datetime) -> bool:
        """Attempt ``attempt`` failed with ``error``: try again at ``at``.

        False (nothing changed) if a later attempt was claimed or it was settled.
        """
        require_aware("at", at)
        return await self._store.settle_callback(sr_id, attempt, Settlement(at, last_error=error))

    async def fail(
        self, sr_id: uuid.UUID, attempt: int, *, error: str, made: int | None = None
    ) -> bool:
        """Give up after attempt ``attempt`` failed with ``error`` (state ``failed``).

        ``made``: the attempts to record instead, when the claimed one POSTed nothing
        (the URL is no longer allowed, or no attempts were left).
        """
        settlement = Settlement(None, state=CallbackState.FAILED, last_error=error, attempts=made)
        return await self._store.settle_callback(sr_id, attempt, settlement)
