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
from typing import Any

from sqlalchemy import select, update

from gateway.store.callbacks import CallbackState
from gateway.store.records import require_aware
from gateway.store.schema import service_requests
from gateway.store.service_requests import (
    ServiceRequestRecord,
    ServiceRequestStore,
    record_of_row,
)

_SR = service_requests
_DUE = CallbackState.DUE.value


class CallbackOutbox:
    """Due result callbacks of a :class:`ServiceRequestStore` (same engine and lock)."""

    def __init__(self, store: ServiceRequestStore) -> None:
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
        query = (
            select(_SR.c.id, _SR.c.callback_attempts)
            .where(_SR.c.callback_state == _DUE, _SR.c.callback_next_at <= now)
            .order_by(_SR.c.callback_next_at, _SR.c.id)
            .limit(limit)
        )
        claimed: list[ServiceRequestRecord] = []
        engine = self._store.engine
        async with self._store._serialized():
            async with engine.connect() as conn:
                candidates = (await conn.execute(query)).all()
            for sr_id, attempts in candidates:
                async with engine.begin() as conn:
                    row = (
                        await conn.execute(
                            update(_SR)
                            .where(
                                _SR.c.id == sr_id,
                                _SR.c.callback_state == _DUE,
                                _SR.c.callback_attempts == attempts,
                                _SR.c.callback_next_at <= now,
                            )
                            .values(callback_attempts=attempts + 1, callback_next_at=now + lease)
                            .returning(*_SR.c)
                        )
                    ).one_or_none()
                if row is not None:
                    claimed.append(record_of_row(row))
        return claimed

    async def delivered(self, sr_id: uuid.UUID, *, at: datetime) -> bool:
        """Mark the callback delivered at ``at``; False if it was not due any more."""
        require_aware("at", at)
        return await self._settle(
            sr_id,
            None,
            callback_state=CallbackState.DELIVERED.value,
            callback_next_at=None,
            callback_delivered_at=at,
        )

    async def retry(self, sr_id: uuid.UUID, attempt: int, *, error: str, at: datetime) -> bool:
        """Attempt ``attempt`` failed with ``error``: try again at ``at``.

        False (nothing changed) if a later attempt was claimed or it was settled.
        """
        require_aware("at", at)
        return await self._settle(sr_id, attempt, callback_next_at=at, callback_last_error=error)

    async def fail(
        self, sr_id: uuid.UUID, attempt: int, *, error: str, made: int | None = None
    ) -> bool:
        """Give up after attempt ``attempt`` failed with ``error`` (state ``failed``).

        ``made``: the attempts to record instead, when the claimed one POSTed nothing
        (the URL is no longer allowed, or no attempts were left).
        """
        extra = {} if made is None else {"callback_attempts": made}
        return await self._settle(
            sr_id,
            attempt,
            callback_state=CallbackState.FAILED.value,
            callback_next_at=None,
            callback_last_error=error,
            **extra,
        )

    async def _settle(self, sr_id: uuid.UUID, attempt: int | None, **values: Any) -> bool:
        conditions = [_SR.c.id == str(sr_id), _SR.c.callback_state == _DUE]
        if attempt is not None:
            conditions.append(_SR.c.callback_attempts == attempt)
        async with self._store._serialized(), self._store.engine.begin() as conn:
            result = await conn.execute(update(_SR).where(*conditions).values(**values))
        return bool(result.rowcount)
