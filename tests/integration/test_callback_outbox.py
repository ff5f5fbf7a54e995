"""The result-callback outbox in the store: one suite, run on SQLite and on PostgreSQL."""

from __future__ import annotations

import asyncio
import uuid
from datetime import timedelta

import pytest

from gateway.core.aggregation import ServiceRequestState, on_answer, on_cancel, on_sent
from gateway.store import ServiceRequests
from gateway.store.callback_outbox import CallbackOutbox
from gateway.store.callbacks import CallbackState
from gateway.store.service_requests import ServiceRequestRecord
from tests.integration import store_fixtures, test_service_request_store
from tests.integration.store_fixtures import Backend
from tests.integration.test_service_request_store import (
    PORTAL,
    T0,
    mid,
    new_request,
    open_store,
    rid,
)

postgres_url = store_fixtures.postgres_url
backend = store_fixtures.backend
requests = test_service_request_store.requests

URL = "https://portal.example/smevbus/results"
LEASE = timedelta(seconds=60)


def answered(state: ServiceRequestState) -> ServiceRequestState:
    """``state`` (a passport check) with its one part answered: COMPLETED."""
    (part,) = state.parts
    return on_answer(state, part.id, {"Valid": "true"}, T0).state


async def final_with_callback(
    requests: ServiceRequests, n: int, at_seconds: float = 0
) -> ServiceRequestRecord:
    record, _ = await requests.create(new_request(n, "passport-check"), PORTAL, callback_url=URL)
    at = T0 + timedelta(seconds=at_seconds)
    return await requests.save(answered(record.state), record.version, at=at)


async def test_the_final_save_makes_the_callback_due_in_its_own_update(
    requests: ServiceRequests,
) -> None:
    record, _ = await requests.create(new_request(1), PORTAL, callback_url=URL)
    assert record.callback is not None
    assert (record.callback.url, record.callback.state) == (URL, CallbackState.PENDING)
    assert await requests.get(rid(1)) == record

    sent = on_sent(record.state, "birth-record", mid(1), T0)
    record = await requests.save(sent, record.version, at=T0 + timedelta(seconds=1))
    assert record.callback is not None
    assert record.callback.state is CallbackState.PENDING  # not final: nothing due
    assert await CallbackOutbox(requests).claim_due(T0 + timedelta(days=1), lease=LEASE) == []

    at = T0 + timedelta(seconds=2)
    final = await requests.save(on_cancel(record.state, at).state, record.version, at=at)

    assert final.callback is not None
    assert final.callback.state is CallbackState.DUE
    assert final.callback.next_attempt_at == at
    assert final.callback.attempts == 0
    assert await requests.get(rid(1)) == final


async def test_no_callback_url_means_no_callback(requests: ServiceRequests) -> None:
    record, _ = await requests.create(new_request(1, "passport-check"), PORTAL)
    final = await requests.save(answered(record.state), record.version, at=T0)
    assert record.callback is None
    assert final.callback is None
    assert await CallbackOutbox(requests).claim_due(T0 + timedelta(days=1), lease=LEASE) == []


async def test_the_first_request_under_a_key_keeps_its_callback_url(
    requests: ServiceRequests,
) -> None:
    first, _ = await requests.create(new_request(1), PORTAL, "key", callback_url=URL)
    again, created = await requests.create(
        new_request(2), PORTAL, "key", callback_url="https://elsewhere.example/cb"
    )
    assert not created
    assert again.callback == first.callback
    with pytest.raises(ValueError, match="callback_url"):
        await requests.create(new_request(3), PORTAL, callback_url="https://x/" + "y" * 2048)


async def test_claims_count_the_attempt_and_lease_it(requests: ServiceRequests) -> None:
    late = await final_with_callback(requests, 1, at_seconds=5)
    early = await final_with_callback(requests, 2, at_seconds=1)
    outbox = CallbackOutbox(requests)

    assert await outbox.claim_due(T0, lease=LEASE) == []  # neither due yet
    now = T0 + timedelta(seconds=5)
    claimed = await outbox.claim_due(now, lease=LEASE)

    assert [r.id for r in claimed] == [early.id, late.id]  # earliest due first
    for record in claimed:
        assert record.callback is not None
        assert record.callback.attempts == 1
        assert record.callback.next_attempt_at == now + LEASE
        assert record.callback.state is CallbackState.DUE
    assert await outbox.claim_due(now + LEASE - timedelta(microseconds=1), lease=LEASE) == []
    again = await outbox.claim_due(now + LEASE, lease=LEASE, limit=1)
    # Both leases end together: the tie is broken by id (rid(1), the later one).
    assert [(r.id, r.callback.attempts if r.callback else 0) for r in again] == [(late.id, 2)]


async def test_concurrent_claims_make_each_attempt_once(
    backend: Backend, requests: ServiceRequests
) -> None:
    for n in range(1, 11):
        await final_with_callback(requests, n)
    others = [open_store(backend) for _ in range(3)]  # independent engines, as processes
    outboxes = [CallbackOutbox(s) for s in [requests, *others, requests, *others]]
    try:
        results = await asyncio.gather(*(o.claim_due(T0, lease=LEASE, limit=10) for o in outboxes))
    finally:
        for other in others:
            await other.close()

    claimed = [r.id for batch in results for r in batch]
    assert sorted(claimed) == [rid(n) for n in range(1, 11)]  # each exactly once
    for n in range(1, 11):
        callback = (await requests.get(rid(n))).callback
        assert callback is not None
        assert callback.attempts == 1


async def test_a_stale_attempt_cannot_push_back_a_newer_one(
    requests: ServiceRequests,
) -> None:
    record = await final_with_callback(requests, 1)
    outbox = CallbackOutbox(requests)
    await outbox.claim_due(T0, lease=LEASE)  # attempt 1, whose process then stalls
    await outbox.claim_due(T0 + LEASE, lease=LEASE)  # attempt 2 after the lease

    assert not await outbox.retry(record.id, 1, error="HTTP 500", at=T0 + LEASE * 2)
    assert not await outbox.fail(record.id, 1, error="HTTP 500")
    callback = (await requests.get(record.id)).callback
    assert callback is not None
    assert (callback.state, callback.attempts, callback.last_error) == (
        CallbackState.DUE,
        2,
        None,
    )

    assert await outbox.retry(record.id, 2, error="HTTP 502", at=T0 + LEASE * 3)
    # A 2xx is the truth, whichever attempt got it.
    assert await outbox.delivered(record.id, at=T0 + LEASE * 2)
    assert not await outbox.delivered(record.id, at=T0 + LEASE * 4)  # not due any more
    callback = (await requests.get(record.id)).callback
    assert callback is not None
    assert callback.state is CallbackState.DELIVERED
    assert (callback.delivered_at, callback.next_attempt_at) == (T0 + LEASE * 2, None)
    assert callback.last_error == "HTTP 502"


async def test_outbox_writes_never_touch_the_request(requests: ServiceRequests) -> None:
    record = await final_with_callback(requests, 1)
    outbox = CallbackOutbox(requests)
    await outbox.claim_due(T0, lease=LEASE)
    await outbox.retry(record.id, 1, error="HTTP 500", at=T0)
    await outbox.claim_due(T0, lease=LEASE)
    await outbox.fail(record.id, 2, error="HTTP 500")

    after = await requests.get(record.id)
    assert (after.state, after.status, after.version, after.updated_at) == (
        record.state,
        record.status,
        record.version,
        record.updated_at,
    )
    assert after.callback is not None
    assert (after.callback.state, after.callback.attempts) == (CallbackState.FAILED, 2)
    assert await outbox.claim_due(T0 + timedelta(days=1), lease=LEASE) == []
    assert not await outbox.delivered(uuid.UUID(int=404), at=T0)
