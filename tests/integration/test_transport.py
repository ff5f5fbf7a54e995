"""One behavioural suite for every transport: each test runs on memory and on RabbitMQ.

On RabbitMQ each test uses its own participant names (a random prefix) and
deletes the queues it declared. Waits are on events or bounded polls; time-based
behaviour (expiry) is driven by a FakeClock on memory and by short real
lifetimes on RabbitMQ, and no assertion depends on how long something took.
"""

from __future__ import annotations

import asyncio
import itertools
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import TypeVar

import aio_pika
import pytest
import structlog
import structlog.testing

from gateway.core.clock import Clock, FakeClock, SystemClock
from gateway.core.errors import DestinationUnknown
from gateway.testing.processes import isolated_vhost
from gateway.transport import (
    DeadLetter,
    DeadLetterEvent,
    DeadLetterReason,
    Delivery,
    DeliveryNotHeld,
    Direction,
    MemoryTransport,
    Message,
    QueueCounts,
    QueueNotDeclared,
    QueuePolicy,
    Transport,
)
from gateway.transport.amqp import AmqpTransport, consumer_lane_name, lane_name
from gateway.transport.topology import all_queue_names
from tests.integration.conftest import close_broker_connections

T = TypeVar("T")

REQ = Direction.REQUESTS
RESP = Direction.RESPONSES

POLICY = QueuePolicy(
    max_deliveries=3,
    retry_delays=(timedelta(milliseconds=50), timedelta(milliseconds=150)),
    visibility_timeout=timedelta(milliseconds=500),
    prefetch=8,
)
WAIT = 15.0  # bounds a wait for something that should happen; never a measurement


@dataclass
class Kit:
    """A transport under test plus what a test needs to drive it."""

    kind: str
    transport: Transport
    clock: Clock
    prefix: str
    #: A short end of life: on memory the test moves the FakeClock past it.
    lifetime: timedelta
    amqp_url: str = ""
    declared: list[str] = field(default_factory=list)

    async def declare(self, *mnemonics: str) -> list[str]:
        names = [f"{self.prefix}{m}" for m in mnemonics]
        self.declared.extend(names)
        await self.transport.declare(names)
        return names

    def elapse(self, delta: timedelta) -> None:
        """Let ``delta`` pass: moves the fake clock; real time passes by itself."""
        if isinstance(self.clock, FakeClock):
            self.clock.advance(delta)


def connection_name(prefix: str) -> str:
    """Names the test's broker connection, so a test can force-close only its own."""
    return f"smevbus-test-{prefix}"


async def close_connections(prefix: str) -> int:
    """Force-close the transport's connections (aio-pika's, and the lanes' it opened)."""
    name = connection_name(prefix)
    names = (name, lane_name(name), consumer_lane_name(name))
    return sum([await close_broker_connections(each) for each in names])


@pytest.fixture(params=["memory", "amqp"])
async def kit(request: pytest.FixtureRequest) -> AsyncIterator[Kit]:
    prefix = f"t{uuid.uuid4().hex[:8]}_"
    if request.param == "memory":
        clock = FakeClock()
        memory = MemoryTransport(clock=clock, policy=POLICY)
        yield Kit("memory", memory, clock, prefix, lifetime=timedelta(minutes=1))
        await memory.close(grace=5)
        return
    url: str = request.getfixturevalue("amqp_url")
    amqp = await AmqpTransport.connect(
        url, policy=POLICY, connection_name=connection_name(prefix), reconnect_timeout=WAIT
    )
    kit = Kit("amqp", amqp, SystemClock(), prefix, timedelta(milliseconds=300), url)
    yield kit
    await kit.transport.close(grace=5)
    await _delete_queues(url, kit.declared)


@pytest.fixture(params=["memory", "amqp"])
async def watched_kit(request: pytest.FixtureRequest) -> AsyncIterator[Kit]:
    """Like ``kit``, but on RabbitMQ in a vhost of its own.

    The dead-letter events queue serves every participant of a vhost: in the shared
    one, this test's watcher would take (and ack) other test runs' events.
    """
    if request.param == "memory":
        clock = FakeClock()
        memory = MemoryTransport(clock=clock, policy=POLICY)
        yield Kit("memory", memory, clock, "", lifetime=timedelta(minutes=1))
        await memory.close(grace=5)
        return
    with isolated_vhost(request.getfixturevalue("amqp_url")) as url:
        amqp = await AmqpTransport.connect(url, policy=POLICY, reconnect_timeout=WAIT)
        yield Kit("amqp", amqp, SystemClock(), "", timedelta(milliseconds=300), url)
        await amqp.close(grace=5)


async def _delete_queues(url: str, participants: list[str]) -> None:
    connection = await aio_pika.connect(url)
    async with connection:
        channel = await connection.channel()
        for participant in participants:
            for direction in Direction:
                for name in all_queue_names(direction, participant, POLICY):
                    await channel.queue_delete(name, if_unused=False, if_empty=False)


async def eventually(probe: Callable[[], Awaitable[T | None]], *, within: float = WAIT) -> T:
    """Poll ``probe`` until it returns something truthy; fail after ``within`` s."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + within
    while True:
        result = await probe()
        if result:
            return result
        if loop.time() > deadline:
            raise AssertionError(f"condition not met within {within}s (last: {result!r})")
        await asyncio.sleep(0.02)


class Inbox:
    """A push handler that records each delivery, then settles it with ``action``."""

    def __init__(self, action: Callable[[Delivery], Awaitable[object]]) -> None:
        self.action = action
        self.seen: asyncio.Queue[Delivery] = asyncio.Queue()
        self.results: list[object] = []

    async def __call__(self, delivery: Delivery) -> None:
        await self.seen.put(delivery)
        self.results.append(await self.action(delivery))

    async def next(self) -> Delivery:
        return await asyncio.wait_for(self.seen.get(), WAIT)


def message(n: int = 1, **kwargs: object) -> Message:
    return Message(f"msg-{n}", f"<body n='{n}'/>".encode(), **kwargs)  # type: ignore[arg-type]


async def dead_letter(kit: Kit, participant: str) -> DeadLetter:
    letters = await eventually(lambda: kit.transport.dead_letters(REQ, participant))
    assert len(letters) == 1
    return letters[0]


async def test_publish_consume_ack(kit: Kit) -> None:
    [zags] = await kit.declare("ZAGS")
    sent = Message(
        "msg-1",
        b"<request/>",
        {"message-type": "urn://zags/birth", "reply-to": "PORTAL"},
        expires_at=kit.clock.now() + timedelta(hours=1),
    )
    await kit.transport.publish(REQ, zags, sent)
    inbox = Inbox(lambda d: d.ack())
    subscription = await kit.transport.consume(REQ, zags, inbox)

    delivery = await inbox.next()
    assert delivery.message == sent
    assert (delivery.delivery_count, delivery.retries) == (1, 0)
    await subscription.cancel()
    assert await kit.transport.get(REQ, zags) is None
    assert await kit.transport.depth(REQ, zags) == 0
    assert await kit.transport.dead_letters(REQ, zags) == []


async def test_directions_are_separate_queues(kit: Kit) -> None:
    [portal] = await kit.declare("PORTAL")
    await kit.transport.publish(RESP, portal, message(1))
    assert await kit.transport.depth(REQ, portal) == 0
    assert await kit.transport.get(REQ, portal) is None
    delivery = await kit.transport.get(RESP, portal)
    assert delivery is not None
    assert delivery.message.message_id == "msg-1"
    await delivery.ack()


async def test_unroutable_publish_raises(kit: Kit) -> None:
    await kit.declare("ZAGS")
    nobody = f"{kit.prefix}NOBODY"
    with pytest.raises(QueueNotDeclared) as raised:
        await kit.transport.publish(REQ, nobody, message())
    assert isinstance(raised.value, DestinationUnknown)
    assert raised.value.code == "destination_unknown"
    with pytest.raises(QueueNotDeclared):
        await kit.transport.depth(REQ, nobody)


async def test_nack_requeue_redelivers_with_incremented_count(kit: Kit) -> None:
    [zags] = await kit.declare("ZAGS")
    await kit.transport.publish(REQ, zags, message())

    async def nack_first(delivery: Delivery) -> None:
        if delivery.delivery_count == 1:
            await delivery.nack(requeue=True)
        else:
            await delivery.ack()

    inbox = Inbox(nack_first)
    await kit.transport.consume(REQ, zags, inbox)
    first, second = await inbox.next(), await inbox.next()
    assert first.message == second.message
    assert [first.delivery_count, second.delivery_count] == [1, 2]


async def test_unsettled_handler_gets_the_message_again(kit: Kit) -> None:
    [zags] = await kit.declare("ZAGS")
    await kit.transport.publish(REQ, zags, message())

    async def forget_first(delivery: Delivery) -> None:
        if delivery.delivery_count > 1:
            await delivery.ack()

    inbox = Inbox(forget_first)
    await kit.transport.consume(REQ, zags, inbox)
    assert [(await inbox.next()).delivery_count for _ in range(2)] == [1, 2]


async def test_failing_handler_hits_delivery_limit_and_dead_letters(kit: Kit) -> None:
    [zags] = await kit.declare("ZAGS")
    await kit.transport.publish(REQ, zags, message())

    async def explode(delivery: Delivery) -> None:
        raise RuntimeError("provider down")

    inbox = Inbox(explode)
    await kit.transport.consume(REQ, zags, inbox)
    counts = [(await inbox.next()).delivery_count for _ in range(POLICY.max_deliveries)]
    assert counts == [1, 2, 3]

    letter = await dead_letter(kit, zags)
    assert letter.reason is DeadLetterReason.DELIVERY_LIMIT
    assert letter.message == message()
    assert await kit.transport.depth(REQ, zags) == 0


async def test_reject_dead_letters_with_reason(kit: Kit) -> None:
    [zags] = await kit.declare("ZAGS")
    await kit.transport.publish(REQ, zags, message(headers={"message-type": "urn://x"}))
    delivery = await kit.transport.get(REQ, zags)
    assert delivery is not None
    await delivery.reject("schema_violation: no such element")

    letter = await dead_letter(kit, zags)
    assert letter.reason is DeadLetterReason.REJECTED
    assert letter.detail == "schema_violation: no such element"
    assert letter.message.headers == {"message-type": "urn://x"}
    with pytest.raises(DeliveryNotHeld):
        await delivery.ack()


async def test_expired_message_is_dead_lettered_not_dropped(kit: Kit) -> None:
    [zags] = await kit.declare("ZAGS")
    expires_at = kit.clock.now() + kit.lifetime
    await kit.transport.publish(REQ, zags, message(expires_at=expires_at))
    kit.elapse(kit.lifetime * 2)

    letter = await dead_letter(kit, zags)
    assert letter.reason is DeadLetterReason.EXPIRED
    assert letter.message.message_id == "msg-1"
    assert letter.message.expires_at == expires_at
    assert await kit.transport.get(REQ, zags) is None
    assert await kit.transport.depth(REQ, zags) == 0


async def test_message_past_end_of_life_is_not_handed_to_a_consumer(kit: Kit) -> None:
    [zags] = await kit.declare("ZAGS")
    await kit.transport.publish(REQ, zags, message(1, expires_at=kit.clock.now() + kit.lifetime))
    kit.elapse(kit.lifetime * 2)
    await dead_letter(kit, zags)  # the broker (or the sweep) expired it first
    await kit.transport.publish(REQ, zags, message(2))
    inbox = Inbox(lambda d: d.ack())
    await kit.transport.consume(REQ, zags, inbox)
    assert (await inbox.next()).message.message_id == "msg-2"
    assert [d.reason for d in await kit.transport.dead_letters(REQ, zags)] == ["expired"]


async def test_end_of_life_far_ahead_is_taken_and_kept_exactly(kit: Kit) -> None:
    # RabbitMQ refuses a per-message TTL this long (PRECONDITION_FAILED value_too_large).
    [zags] = await kit.declare("ZAGS")
    eol = datetime(2099, 1, 1, tzinfo=UTC)
    await kit.transport.publish(REQ, zags, message(expires_at=eol))
    await kit.transport.publish(REQ, zags, message(2))  # the channel still works
    first, second = await kit.transport.get(REQ, zags), await kit.transport.get(REQ, zags)
    assert first is not None
    assert second is not None
    assert first.message == message(expires_at=eol)
    assert second.message.message_id == "msg-2"
    for delivery in (first, second):
        await delivery.ack()


@pytest.fixture(params=["memory", "amqp"])
async def fake_time_kit(request: pytest.FixtureRequest) -> AsyncIterator[Kit]:
    """Like ``kit``, but on a FakeClock on RabbitMQ too: for ends of life too far ahead
    for the broker's TTL, which only the transport's own check enforces."""
    clock = FakeClock(SystemClock().now())
    prefix = f"t{uuid.uuid4().hex[:8]}_"
    if request.param == "memory":
        memory = MemoryTransport(clock=clock, policy=POLICY)
        yield Kit("memory", memory, clock, prefix, lifetime=timedelta(minutes=1))
        await memory.close(grace=5)
        return
    url: str = request.getfixturevalue("amqp_url")
    amqp = await AmqpTransport.connect(url, policy=POLICY, clock=clock, reconnect_timeout=WAIT)
    kit = Kit("amqp", amqp, clock, prefix, timedelta(minutes=1), url)
    yield kit
    await amqp.close(grace=5)
    await _delete_queues(url, kit.declared)


async def test_end_of_life_beyond_the_broker_ttl_still_expires_at_its_time(
    fake_time_kit: Kit,
) -> None:
    kit = fake_time_kit
    [zags] = await kit.declare("ZAGS")
    eol = kit.clock.now() + timedelta(days=60)  # over RabbitMQ's 49.7-day TTL limit
    await kit.transport.publish(REQ, zags, message(1, expires_at=eol))
    await kit.transport.publish(REQ, zags, message(2, expires_at=eol))
    kit.elapse(timedelta(days=59))
    delivery = await kit.transport.get(REQ, zags)
    assert delivery is not None
    assert delivery.message.message_id == "msg-1"
    await delivery.ack()

    kit.elapse(timedelta(days=2))
    assert await kit.transport.get(REQ, zags) is None
    letter = await dead_letter(kit, zags)
    assert (letter.reason, letter.message.message_id) == (DeadLetterReason.EXPIRED, "msg-2")
    assert letter.message.expires_at == eol


async def test_pull_get_then_ack(kit: Kit) -> None:
    [mvd] = await kit.declare("MVD_MIGR")
    await kit.transport.publish(REQ, mvd, message())
    delivery = await kit.transport.get(REQ, mvd)
    assert delivery is not None
    assert delivery.message == message()
    assert delivery.delivery_count == 1
    await delivery.ack()
    assert await kit.transport.get(REQ, mvd) is None
    assert await kit.transport.depth(REQ, mvd) == 0


async def test_pulled_message_comes_back_after_visibility_timeout(kit: Kit) -> None:
    [mvd] = await kit.declare("MVD_MIGR")
    await kit.transport.publish(REQ, mvd, message())
    first = await kit.transport.get(REQ, mvd)
    assert first is not None
    assert await kit.transport.get(REQ, mvd) is None  # invisible while held

    second = await eventually(lambda: kit.transport.get(REQ, mvd))
    assert second.message == first.message
    assert second.delivery_count == 2
    with pytest.raises(DeliveryNotHeld):
        await first.ack()  # too late: the Ack of a lapsed GetRequest
    await second.ack()
    assert await kit.transport.depth(REQ, mvd) == 0


async def test_retry_later_backs_off_then_dead_letters(kit: Kit) -> None:
    [zags] = await kit.declare("ZAGS")
    await kit.transport.publish(REQ, zags, message())
    inbox = Inbox(lambda d: d.retry_later())
    await kit.transport.consume(REQ, zags, inbox)

    deliveries = [await inbox.next() for _ in range(len(POLICY.retry_delays) + 1)]
    assert [d.retries for d in deliveries] == [0, 1, 2]
    assert all(d.delivery_count == 1 for d in deliveries)  # a retry is not a failure
    assert all(d.message == message() for d in deliveries)
    letter = await dead_letter(kit, zags)
    assert letter.reason is DeadLetterReason.RETRIES_EXHAUSTED
    assert inbox.results == [*POLICY.retry_delays, None]
    assert POLICY.retry_delays[0] < POLICY.retry_delays[1]


async def test_dead_letters_are_listed_without_removal_and_replayed(kit: Kit) -> None:
    [zags] = await kit.declare("ZAGS")
    for n in (1, 2):
        await kit.transport.publish(REQ, zags, message(n))
        delivery = await kit.transport.get(REQ, zags)
        assert delivery is not None
        await delivery.reject(f"bad {n}")

    async def both() -> list[DeadLetter]:
        letters = await kit.transport.dead_letters(REQ, zags)
        return letters if len(letters) == 2 else []

    listed = await eventually(both)
    assert {(d.message.message_id, d.detail) for d in listed} == {
        ("msg-1", "bad 1"),
        ("msg-2", "bad 2"),
    }
    assert len(await kit.transport.dead_letters(REQ, zags, limit=1)) == 1
    assert await kit.transport.dead_letters(REQ, zags) == listed  # peeking left them in order

    assert await kit.transport.replay(REQ, zags, ["msg-2"]) == 1
    replayed = await eventually(lambda: kit.transport.get(REQ, zags))
    assert replayed.message == message(2)
    assert (replayed.delivery_count, replayed.retries) == (1, 0)
    await replayed.ack()
    assert [d.message.message_id for d in await kit.transport.dead_letters(REQ, zags)] == ["msg-1"]
    assert await kit.transport.replay(REQ, zags) == 1
    assert await kit.transport.dead_letters(REQ, zags) == []
    assert await kit.transport.depth(REQ, zags) == 1


async def test_depth_counts_ready_messages(kit: Kit) -> None:
    [zags] = await kit.declare("ZAGS")
    assert await kit.transport.depth(REQ, zags) == 0
    for n in range(3):
        await kit.transport.publish(REQ, zags, message(n))
    assert await kit.transport.depth(REQ, zags) == 3
    held = await kit.transport.get(REQ, zags)
    assert held is not None
    assert await kit.transport.depth(REQ, zags) == 2
    await held.ack()
    assert await kit.transport.depth(REQ, zags) == 2


async def test_counts_tell_ready_consumers_dead_letters_and_unacked_where_known(
    kit: Kit,
) -> None:
    [zags] = await kit.declare("ZAGS")
    for n in range(3):
        await kit.transport.publish(REQ, zags, message(n))
    refused = await kit.transport.get(REQ, zags)
    assert refused is not None
    await refused.reject("not for this participant")
    held = await kit.transport.get(REQ, zags)
    assert held is not None

    async def dead_lettered() -> QueueCounts | None:
        counts = await kit.transport.counts(REQ, zags)
        return counts if counts.dead_letters else None

    counts = await eventually(dead_lettered)
    # Declares on RabbitMQ do not tell unacked; the memory transport knows. (RabbitMQ
    # counts the channel that pulled from a quorum queue as a consumer: not compared.)
    unacked = 1 if kit.kind == "memory" else None
    assert (counts.ready, counts.unacked, counts.dead_letters) == (1, unacked, 1)

    subscription = await kit.transport.consume(RESP, zags, Inbox(lambda d: d.ack()))
    consumed = await kit.transport.counts(RESP, zags)
    await subscription.cancel()
    assert (consumed.ready, consumed.consumers, consumed.dead_letters) == (0, 1, 0)
    assert (await kit.transport.counts(RESP, zags)).consumers == 0
    await held.ack()
    assert (await kit.transport.counts(REQ, zags)).unacked == (0 if unacked else None)


async def test_prefetch_bounds_unsettled_deliveries(kit: Kit) -> None:
    [zags] = await kit.declare("ZAGS")
    release = asyncio.Event()
    acked: list[str] = []

    async def slow(delivery: Delivery) -> None:
        await release.wait()
        await delivery.ack()
        acked.append(delivery.message.message_id)

    inbox = Inbox(slow)
    await kit.transport.consume(REQ, zags, inbox, prefetch=2)
    for n in range(5):
        await kit.transport.publish(REQ, zags, message(n))

    async def two_held_three_waiting() -> bool:
        return inbox.seen.qsize() == 2 and await kit.transport.depth(REQ, zags) == 3

    await eventually(two_held_three_waiting)
    release.set()
    await eventually(lambda: asyncio.sleep(0, len(acked) == 5))
    assert sorted(acked) == [f"msg-{n}" for n in range(5)]


async def test_close_waits_for_handlers_in_flight(kit: Kit) -> None:
    [zags] = await kit.declare("ZAGS")
    started, release = asyncio.Event(), asyncio.Event()
    events: list[str] = []

    async def slow(delivery: Delivery) -> None:
        started.set()
        await release.wait()
        await delivery.ack()
        events.append("acked")

    await kit.transport.consume(REQ, zags, slow)
    await kit.transport.publish(REQ, zags, message())
    await asyncio.wait_for(started.wait(), WAIT)

    closing = asyncio.create_task(kit.transport.close(grace=WAIT))
    done, _ = await asyncio.wait({closing}, timeout=0.2)
    assert not done, "close() returned while a handler was still running"
    release.set()
    await asyncio.wait_for(closing, WAIT)
    events.append("closed")
    assert events == ["acked", "closed"]

    if kit.kind == "amqp":  # the ack really reached the broker before the disconnect
        fresh = await AmqpTransport.connect(kit.amqp_url, policy=POLICY)
        try:
            await fresh.declare([zags])
            assert await fresh.depth(REQ, zags) == 0
            assert await fresh.get(REQ, zags) is None
        finally:
            await fresh.close()


async def test_reconnects_after_forced_close_and_loses_no_confirmed_message(kit: Kit) -> None:
    if kit.kind != "amqp":
        pytest.skip("a broker connection exists only on RabbitMQ")
    [zags] = await kit.declare("ZAGS")
    received: set[str] = set()

    async def collect(delivery: Delivery) -> None:
        received.add(delivery.message.message_id)
        await delivery.ack()

    await kit.transport.consume(REQ, zags, collect)
    confirmed: list[str] = []
    stop = asyncio.Event()

    async def publish_stream() -> None:
        for n in itertools.count():
            if stop.is_set():
                return
            await kit.transport.publish(REQ, zags, message(n))
            confirmed.append(f"msg-{n}")

    with structlog.testing.capture_logs() as logs:
        publishing = asyncio.create_task(publish_stream())
        await eventually(lambda: asyncio.sleep(0, len(confirmed) >= 20))
        assert await close_connections(kit.prefix) == 3  # consuming, publishing
        at_kill = len(confirmed)
        await eventually(lambda: asyncio.sleep(0, len(confirmed) >= at_kill + 20))
        stop.set()
        await asyncio.wait_for(publishing, WAIT)

    assert "transport_reconnected" in [entry["event"] for entry in logs]
    await eventually(lambda: asyncio.sleep(0, received >= set(confirmed)), within=WAIT * 2)
    assert await kit.transport.depth(REQ, zags) == 0  # topology usable again


async def test_pulls_from_one_queue_go_on_across_a_forced_close(kit: Kit) -> None:
    if kit.kind != "amqp":
        pytest.skip("a broker connection exists only on RabbitMQ")
    [zags] = await kit.declare("ZAGS")
    await kit.transport.publish(REQ, zags, message(1))
    before = await kit.transport.get(REQ, zags)
    assert before is not None
    await before.ack()

    assert await close_connections(kit.prefix) == 2  # no consumer
    await kit.transport.publish(REQ, zags, message(2))  # confirmed once reconnected
    after = await eventually(lambda: kit.transport.get(REQ, zags))
    assert after.message == message(2)
    await after.ack()
    assert await kit.transport.get(REQ, zags) is None


async def test_watcher_hears_of_every_dead_letter_with_where_and_why(watched_kit: Kit) -> None:
    kit = watched_kit
    [zags, portal] = await kit.declare("ZAGS", "PORTAL")
    heard: asyncio.Queue[DeadLetterEvent] = asyncio.Queue()
    await kit.transport.watch_dead_letters(heard.put)

    await kit.transport.publish(REQ, zags, message(1))
    rejected = await kit.transport.get(REQ, zags)
    assert rejected is not None
    await rejected.reject("schema_violation: no such element")

    await kit.transport.publish(REQ, zags, message(2))
    for _ in range(POLICY.max_deliveries):
        failed = await eventually(lambda: kit.transport.get(REQ, zags))
        await failed.nack(requeue=True)

    await kit.transport.publish(RESP, portal, message(3, expires_at=kit.clock.now() + kit.lifetime))
    kit.elapse(kit.lifetime * 2)
    await kit.transport.depth(RESP, portal)  # memory expires what it looks at

    events = [await asyncio.wait_for(heard.get(), WAIT) for _ in range(3)]
    assert {(e.direction, e.participant, e.letter.message.message_id) for e in events} == {
        (REQ, zags, "msg-1"),
        (REQ, zags, "msg-2"),
        (RESP, portal, "msg-3"),
    }
    by_id = {e.letter.message.message_id: e.letter for e in events}
    assert by_id["msg-1"].reason is DeadLetterReason.REJECTED
    assert by_id["msg-1"].detail == "schema_violation: no such element"
    assert by_id["msg-2"].reason is DeadLetterReason.DELIVERY_LIMIT
    assert by_id["msg-3"].reason is DeadLetterReason.EXPIRED
    # Telling is not taking: the dead letters stay listable and replayable.
    assert [d.message.message_id for d in await kit.transport.dead_letters(REQ, zags)] == [
        "msg-1",
        "msg-2",
    ]
    assert [d.message.message_id for d in await kit.transport.dead_letters(RESP, portal)] == [
        "msg-3"
    ]
    assert heard.empty()


async def test_dead_letter_events_wait_for_a_watcher_and_survive_a_failed_handler(
    watched_kit: Kit,
) -> None:
    kit = watched_kit
    [zags] = await kit.declare("ZAGS")
    first = await kit.transport.watch_dead_letters(lambda event: asyncio.sleep(0))
    await first.cancel()

    await kit.transport.publish(REQ, zags, message(1))
    delivery = await kit.transport.get(REQ, zags)
    assert delivery is not None
    await delivery.reject("nobody is watching")  # kept until someone does

    calls: list[str] = []
    recorded: asyncio.Queue[DeadLetterEvent] = asyncio.Queue()

    async def flaky(event: DeadLetterEvent) -> None:
        calls.append(event.letter.message.message_id)
        if len(calls) == 1:
            raise RuntimeError("journal unreachable")
        await recorded.put(event)

    with structlog.testing.capture_logs() as logs:
        await kit.transport.watch_dead_letters(flaky)
        event = await asyncio.wait_for(recorded.get(), WAIT)
    assert event.letter.detail == "nobody is watching"
    assert calls == ["msg-1", "msg-1"]
    assert "dead_letter_handler_failed" in [entry["event"] for entry in logs]
