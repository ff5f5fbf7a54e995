"""Result callbacks: URL checks, and the dispatcher over an in-memory store.

The receiver is a real HTTP listener on 127.0.0.1 (:mod:`tests.unit.callback_receiver`)
behind the real :class:`HttpSender`, which reaches it as ``portal.example`` through a
:class:`StaticResolver` and only because its guard lists ``127.0.0.0/8`` (by default
loopback is refused, see ``test_callback_guard.py``); time is a :class:`FakeClock`, so
backoff is checked to the microsecond and nothing sleeps.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import hmac
import json
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from ipaddress import ip_network
from typing import Any

import pytest
import structlog

from gateway.aggregator.callback_guard import CallbackGuard, StaticResolver
from gateway.aggregator.callback_url import check_callback_url, host_allowed
from gateway.aggregator.callbacks import (
    CallbackDispatcher,
    HttpSender,
    RetryPolicy,
    signature,
)
from gateway.api.views import callback_body, service_request_url, service_request_view
from gateway.core.aggregation import new_service_request, on_answer
from gateway.core.clock import FakeClock
from gateway.core.errors import SchemaViolation
from gateway.core.service_lifecycle import ServiceState
from gateway.store import ServiceRequests, open_stores
from gateway.store.callback_outbox import CallbackOutbox
from gateway.store.callbacks import CallbackState
from gateway.store.service_requests import ServiceRequestRecord
from gateway.supervisor import Supervisor, rounds
from gateway.testing.bus import pump
from gateway.testing.scrape import this_process
from tests.unit.callback_fixtures import CallbackReceiver
from tests.unit.test_aggregator_service import APPLICANT, CATALOGUE, PORTAL, SERVICE, World
from tests.unit.test_aggregator_service import world as world

T0 = datetime(2026, 3, 1, 9, 0, tzinfo=UTC)
PATH = "/smevbus/results?token=t0p"
BASE_URL = "https://bus.example"
SECRET = b"callback-secret"


def loopback_sender(timeout: float = 10.0) -> HttpSender:
    """The real sender, allowed to reach 127.0.0.0/8 (the explicit setting), resolving
    ``portal.example`` to 127.0.0.1."""
    guard = CallbackGuard(
        networks=[ip_network("127.0.0.0/8")],
        resolver=StaticResolver({"portal.example": ["127.0.0.1"]}),
    )
    return HttpSender(guard, timeout=timeout)


# --- the URL check ----------------------------------------------------------------


@pytest.mark.parametrize(
    "url",
    [
        "https://portal.example/cb",
        "http://10.0.0.5:8080/cb?x=1",
        "https://[::1]:8443/cb",
        "https://портал.рф/cb",
    ],
)
def test_absolute_http_urls_pass(url: str) -> None:
    assert check_callback_url(url) == url


def test_allow_list_matches_hosts_and_subdomains_case_insensitively() -> None:
    allowed = ("portal.example", "*.gov71.example", "xn--80awhdgm.xn--p1ai")
    assert host_allowed("PORTAL.example", allowed)
    assert host_allowed("mfc.gov71.example", allowed)
    assert host_allowed("a.b.gov71.example", allowed)
    assert not host_allowed("gov71.example", allowed)
    assert not host_allowed("evilgov71.example", allowed)
    assert not host_allowed("portal.example.evil", allowed)
    # An IDN host is matched in either spelling.
    assert check_callback_url("https://портал.рф/cb", allowed)
    with pytest.raises(SchemaViolation) as refused:
        check_callback_url("http://169.254.169.254/latest", allowed)
    assert refused.value.detail["field"] == "callback_url"


def test_retry_policy_doubles_and_caps_the_delay() -> None:
    policy = RetryPolicy(
        first_delay=timedelta(seconds=1), max_delay=timedelta(seconds=60), jitter=0
    )
    delays = [policy.delay(n).total_seconds() for n in range(1, 9)]
    assert delays == [1, 2, 4, 8, 16, 32, 60, 60]
    assert policy.delay(10_000) == timedelta(seconds=60)  # no overflow
    with pytest.raises(ValueError, match="max_attempts"):
        RetryPolicy(max_attempts=0)
    with pytest.raises(ValueError, match="jitter"):
        RetryPolicy(jitter=1)


def test_retry_delays_are_shortened_at_random_by_at_most_the_jitter() -> None:
    policy = RetryPolicy(first_delay=timedelta(seconds=10), jitter=0.2)
    assert policy.delay(1, draw=lambda: 0.0) == timedelta(seconds=10)
    assert policy.delay(1, draw=lambda: 0.5) == timedelta(seconds=9)
    waits = {policy.delay(1).total_seconds() for _ in range(200)}
    assert all(8 < w <= 10 for w in waits)
    assert len(waits) > 100  # spread out, not one shared moment


# --- the dispatcher ---------------------------------------------------------------


@dataclass
class Setup:
    store: ServiceRequests
    clock: FakeClock
    receiver: CallbackReceiver
    sender: HttpSender

    @property
    def url(self) -> str:
        return self.receiver.url("portal.example", PATH)

    def dispatcher(self, **kw: Any) -> CallbackDispatcher:
        return CallbackDispatcher(
            CallbackOutbox(self.store),
            self.sender,
            lambda record: callback_body(record, BASE_URL),
            clock=self.clock,
            **kw,
        )

    async def final_request(self, n: int = 1, url: str | None = "") -> ServiceRequestRecord:
        """A passport check with ``url`` (default: the receiver) as its callback, answered
        (COMPLETED) at now."""
        state = new_service_request(uuid.UUID(int=n), CATALOGUE.get("passport-check"), T0)
        url = self.url if url == "" else url
        record, _ = await self.store.create(state, PORTAL, callback_url=url)
        (part,) = state.parts
        done = on_answer(state, part.id, {"Valid": "true"}, self.clock.now()).state
        return await self.store.save(done, record.version, at=self.clock.now())


@pytest.fixture
async def setup() -> AsyncIterator[Setup]:
    store = open_stores("sqlite://").service_requests
    await store.migrate()
    sender = loopback_sender()
    try:
        async with CallbackReceiver() as receiver:
            yield Setup(store, FakeClock(T0), receiver, sender)
    finally:
        await sender.aclose()
        await store.close()


async def test_a_final_request_is_posted_once_as_its_get_representation(setup: Setup) -> None:
    record = await setup.final_request()
    assert record.callback is not None
    assert (record.callback.state, record.callback.next_attempt_at) == (CallbackState.DUE, T0)

    with structlog.testing.capture_logs() as logs:
        assert await setup.dispatcher().deliver_due() == 1
        assert await setup.dispatcher().deliver_due() == 0  # delivered: never again

    (request,) = setup.receiver.received
    assert request.method == "POST"
    assert request.target == PATH
    assert request.headers["host"] == f"portal.example:{setup.receiver.port}"
    assert request.headers["content-type"] == "application/json"
    assert request.headers["x-smevbus-service-request"] == str(record.id)
    assert request.headers["x-smevbus-attempt"] == "1"
    assert "x-smevbus-signature" not in request.headers  # no secret set
    after = await setup.store.get(record.id)
    expected = service_request_view(after, service_request_url(BASE_URL, record.id))
    body = request.json()
    assert body["links"]["self"] == f"{BASE_URL}/api/v1/service-requests/{record.id}"
    assert {k: v for k, v in body.items() if k != "callback"} == expected.model_dump(
        mode="json", by_alias=True, exclude={"callback"}
    )
    assert body["callback"]["state"] == "due"  # the attempt in progress
    assert body["callback"]["attempts"] == 1
    assert after.callback is not None
    assert after.callback.state is CallbackState.DELIVERED
    assert (after.callback.attempts, after.callback.delivered_at) == (1, T0)
    assert after.callback.next_attempt_at is None
    assert [e["event"] for e in logs] == ["callback_delivered"]
    assert "token" not in json.dumps(logs[0], default=str)  # the URL's secrets stay out


async def test_pending_requests_and_requests_without_callback_post_nothing(
    setup: Setup,
) -> None:
    state = new_service_request(uuid.UUID(int=7), CATALOGUE.get("passport-check"), T0)
    pending, _ = await setup.store.create(state, PORTAL, callback_url=setup.url)
    assert pending.callback is not None
    assert pending.callback.state is CallbackState.PENDING
    no_callback = await setup.final_request(8, url=None)
    assert no_callback.callback is None

    assert await setup.dispatcher().deliver_due() == 0
    assert setup.receiver.received == []


async def test_failures_are_retried_with_doubling_backoff_until_a_2xx(setup: Setup) -> None:
    setup.receiver.answers = [500, "drop", 200]
    record = await setup.final_request()
    dispatcher = setup.dispatcher(policy=RetryPolicy(jitter=0))

    with structlog.testing.capture_logs() as logs:
        assert await dispatcher.deliver_due() == 1  # attempt 1: HTTP 500
        first = (await setup.store.get(record.id)).callback
        assert first is not None
        assert (first.state, first.attempts, first.last_error) == (
            CallbackState.DUE,
            1,
            "HTTP 500",
        )
        assert first.next_attempt_at == T0 + timedelta(seconds=1)

        setup.clock.advance(timedelta(milliseconds=999))
        assert await dispatcher.deliver_due() == 0  # not due yet
        setup.clock.advance(timedelta(milliseconds=1))
        assert await dispatcher.deliver_due() == 1  # attempt 2: connection refused
        second = (await setup.store.get(record.id)).callback
        assert second is not None
        assert second.last_error == "ServerDisconnectedError: Server disconnected"
        assert second.next_attempt_at == T0 + timedelta(seconds=1 + 2)

        setup.clock.advance(timedelta(seconds=2))
        assert await dispatcher.deliver_due() == 1  # attempt 3: 200
    done = await setup.store.get(record.id)
    assert done.callback is not None
    assert done.callback.state is CallbackState.DELIVERED
    assert done.callback.attempts == 3
    assert done.callback.delivered_at == T0 + timedelta(seconds=3)
    assert [r.headers["x-smevbus-attempt"] for r in setup.receiver.received] == ["1", "2", "3"]
    assert [e["event"] for e in logs] == [
        "callback_retry_scheduled",
        "callback_retry_scheduled",
        "callback_delivered",
    ]
    assert [e["attempt"] for e in logs] == [1, 2, 3]


async def test_gives_up_after_the_last_attempt_and_never_changes_the_result(
    setup: Setup,
) -> None:
    setup.receiver.answers = [500, "drop", 503, 200]
    record = await setup.final_request()
    dispatcher = setup.dispatcher(
        policy=RetryPolicy(max_attempts=3, first_delay=timedelta(seconds=5))
    )

    with structlog.testing.capture_logs() as logs:
        for wait in (0, 5, 10):
            setup.clock.advance(timedelta(seconds=wait))
            assert await dispatcher.deliver_due() == 1
        setup.clock.advance(timedelta(days=1))
        assert await dispatcher.deliver_due() == 0

    failed = await setup.store.get(record.id)
    assert failed.callback is not None
    assert failed.callback.state is CallbackState.FAILED
    assert (failed.callback.attempts, failed.callback.last_error) == (3, "HTTP 503")
    assert failed.callback.next_attempt_at is None
    assert failed.callback.delivered_at is None
    assert len(setup.receiver.received) == 3
    assert logs[-1]["event"] == "callback_failed"
    assert logs[-1]["log_level"] == "error"
    # The service request itself is exactly as the aggregator saved it.
    assert failed.state == record.state
    assert failed.status is ServiceState.COMPLETED
    assert (failed.version, failed.updated_at) == (record.version, record.updated_at)


async def test_signature_is_the_hmac_sha256_of_the_exact_body(setup: Setup) -> None:
    await setup.final_request()
    assert await setup.dispatcher(secret=SECRET).deliver_due() == 1

    (request,) = setup.receiver.received
    digest = hmac.new(SECRET, request.body, hashlib.sha256).hexdigest()
    assert request.headers["x-smevbus-signature"] == f"sha256={digest}"
    assert signature(request.body, SECRET) == f"sha256={digest}"
    assert signature(request.body + b" ", SECRET) != f"sha256={digest}"


async def test_a_sender_that_raises_anything_is_retried_not_raised(setup: Setup) -> None:
    class Broken:
        async def post(self, url: str, body: bytes, headers: Any) -> int:
            raise RuntimeError("bug in a sender")

    record = await setup.final_request()
    dispatcher = CallbackDispatcher(
        CallbackOutbox(setup.store),
        Broken(),
        lambda r: callback_body(r, BASE_URL),
        clock=setup.clock,
    )
    assert await dispatcher.deliver_due() == 1
    after = (await setup.store.get(record.id)).callback
    assert after is not None
    assert (after.state, after.last_error) == (CallbackState.DUE, "RuntimeError: bug in a sender")


async def test_a_host_no_longer_allowed_fails_without_a_post(setup: Setup) -> None:
    record = await setup.final_request()
    with structlog.testing.capture_logs() as logs:
        assert await setup.dispatcher(allowed_hosts=("other.example",)).deliver_due() == 1
    assert setup.receiver.received == []
    after = (await setup.store.get(record.id)).callback
    assert after is not None
    assert (after.state, after.attempts) == (CallbackState.FAILED, 0)
    assert after.last_error is not None
    assert "SMEVBUS_CALLBACK_HOSTS" in after.last_error
    assert [e["event"] for e in logs] == ["callback_failed"]


async def test_an_attempt_cut_off_mid_post_is_made_again_after_its_lease(setup: Setup) -> None:
    record = await setup.final_request()
    lease = timedelta(seconds=60)
    # A process claims attempt 1 and dies before it settles it.
    (claimed,) = await CallbackOutbox(setup.store).claim_due(T0, lease=lease)
    assert claimed.callback is not None
    assert claimed.callback.next_attempt_at == T0 + lease
    dispatcher = setup.dispatcher(policy=RetryPolicy(max_attempts=2, lease=lease))

    setup.clock.advance(lease - timedelta(microseconds=1))
    assert await dispatcher.deliver_due() == 0  # still leased
    setup.clock.advance(timedelta(microseconds=1))
    assert await dispatcher.deliver_due() == 1
    assert [r.headers["x-smevbus-attempt"] for r in setup.receiver.received] == ["2"]
    after = (await setup.store.get(record.id)).callback
    assert after is not None
    assert (after.state, after.attempts) == (CallbackState.DELIVERED, 2)


async def test_a_cut_off_last_attempt_gives_up_without_another_post(setup: Setup) -> None:
    record = await setup.final_request()
    outbox = CallbackOutbox(setup.store)
    await outbox.claim_due(T0, lease=timedelta(seconds=60))  # attempt 1 dies
    setup.clock.advance(timedelta(seconds=60))
    dispatcher = setup.dispatcher(policy=RetryPolicy(max_attempts=1))
    assert await dispatcher.deliver_due() == 1
    assert setup.receiver.received == []
    after = (await setup.store.get(record.id)).callback
    assert after is not None
    assert (after.state, after.attempts) == (CallbackState.FAILED, 1)


async def test_a_backlog_is_drained_in_batches(setup: Setup) -> None:
    for n in range(1, 6):
        await setup.final_request(n)
    assert await setup.dispatcher(batch=2).deliver_due() == 5
    ids = sorted(r.headers["x-smevbus-service-request"] for r in setup.receiver.received)
    assert ids == sorted(str(uuid.UUID(int=n)) for n in range(1, 6))


async def test_a_post_is_bounded_as_a_whole_by_the_timeout(setup: Setup) -> None:
    setup.receiver.answers = ["hang"]  # never answers: only the overall timeout ends it
    record = await setup.final_request()
    sender = loopback_sender(timeout=0.01)
    try:
        dispatcher = CallbackDispatcher(
            CallbackOutbox(setup.store),
            sender,
            lambda r: callback_body(r, BASE_URL),
            clock=setup.clock,
        )
        assert await dispatcher.deliver_due() == 1
    finally:
        await sender.aclose()
    after = (await setup.store.get(record.id)).callback
    assert after is not None
    assert (after.state, after.last_error) == (CallbackState.DUE, "TimeoutError")


async def test_the_gateway_loop_outlives_a_failing_store() -> None:
    calls = 0
    second = asyncio.Event()

    class Flaky:
        async def deliver_due(self) -> int:
            nonlocal calls
            calls += 1
            if calls == 1:
                raise ConnectionError("the database is down")
            second.set()
            return 0

    async def no_pause(_seconds: float) -> None:
        pass

    supervisor = Supervisor(sleep=no_pause)
    flaky = Flaky()
    with structlog.testing.capture_logs() as logs:
        supervisor.spawn("callbacks", lambda: rounds(flaky.deliver_due, 3600, asyncio.Event()))
        try:
            await asyncio.wait_for(second.wait(), timeout=10)  # bounds only a failure
        finally:
            await supervisor.close()
    assert [e["event"] for e in logs] == ["task_failed", "task_restarted"]
    assert supervisor.failures == {"callbacks": 1}


async def test_a_finished_request_wakes_the_loop_before_its_interval() -> None:
    passes: list[asyncio.Event] = [asyncio.Event(), asyncio.Event()]

    class Counting:
        async def deliver_due(self) -> int:
            for done in passes:
                if not done.is_set():
                    done.set()
                    break
            return 0

    wake = asyncio.Event()
    loop = asyncio.create_task(rounds(Counting().deliver_due, 3600, wake))
    try:
        await asyncio.wait_for(passes[0].wait(), timeout=10)  # bounds only a failure
        wake.set()  # what the aggregator does when a request becomes final
        await asyncio.wait_for(passes[1].wait(), timeout=10)  # not an hour later
    finally:
        loop.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await loop


# --- through the aggregator ---------------------------------------------------------


async def test_the_aggregator_makes_the_callback_due_with_the_final_save(world: World) -> None:
    sender = loopback_sender()
    async with CallbackReceiver() as receiver:
        record, _ = await world.agg.submit(
            service=SERVICE,
            applicant=APPLICANT,
            participant=PORTAL,
            callback_url=receiver.url("portal.example"),
        )
        assert record.callback is not None
        assert record.callback.state is CallbackState.PENDING
        dispatcher = CallbackDispatcher(
            CallbackOutbox(world.store),
            sender,
            lambda r: callback_body(r, BASE_URL),
            clock=world.bus.clock,
        )
        try:
            await world.answer("birth-record")
            await pump(world.bus, world.agg)
            assert await dispatcher.deliver_due() == 0  # not final yet
            await world.answer("parent-registration")
            await world.answer("parent-inn")
            await pump(world.bus, world.agg)
            assert await dispatcher.deliver_due() == 1
        finally:
            await sender.aclose()
    (body,) = receiver.bodies()
    assert body["status"] == "COMPLETED"
    assert body["result"]["parent_inn"] is not None
    with pytest.raises(SchemaViolation):
        await world.agg.submit(
            service=SERVICE, applicant=APPLICANT, participant=PORTAL, callback_url="file:///x"
        )


async def test_each_attempt_is_counted_by_outcome_in_the_metrics(setup: Setup) -> None:
    def counted() -> dict[str, float]:
        page = this_process()
        return {
            o: page.value("smevbus_callbacks_total", outcome=o)
            for o in ("delivered", "retry", "failed")
        }

    before = counted()
    setup.receiver.answers = [500, 200, 500]
    await setup.final_request(1)
    dispatcher = setup.dispatcher(policy=RetryPolicy(jitter=0, max_attempts=2))
    assert await dispatcher.deliver_due() == 1  # 500: retried
    setup.clock.advance(timedelta(seconds=1))
    assert await dispatcher.deliver_due() == 1  # 200: delivered
    await setup.final_request(2)
    once = setup.dispatcher(policy=RetryPolicy(jitter=0, max_attempts=1))
    assert await once.deliver_due() == 1  # 500 on the only attempt: failed

    after = counted()
    assert {o: after[o] - before[o] for o in after} == {"delivered": 1, "retry": 1, "failed": 1}
