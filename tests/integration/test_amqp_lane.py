"""The transport's publish and get connection (``gateway.transport.amqp_lane``) on
RabbitMQ: what becomes of a pulled message, a get and a publish when that connection
or one of its channels goes, on its own or with the other one."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator
from datetime import timedelta

import aio_pika
import pika
import pytest
import structlog.testing

from gateway.testing.processes import isolated_vhost
from gateway.transport import Delivery, Direction, Message, QueueNotDeclared, QueuePolicy
from gateway.transport.amqp import AmqpTransport, consumer_lane_name, lane_name
from gateway.transport.amqp_lane import AmqpLane, LaneMessage, Refused
from gateway.transport.topology import exchange_name, queue_name
from tests.integration.conftest import close_broker_connections
from tests.integration.test_transport import eventually

pytestmark = pytest.mark.integration

REQ = Direction.REQUESTS
WAIT = 15.0  # bounds a wait for something that should happen; never a measurement
#: Long enough that no pulled message lapses back by itself during a test.
POLICY = QueuePolicy(visibility_timeout=timedelta(minutes=5))


def message(n: int) -> Message:
    return Message(message_id=f"msg-{n}", body=f"<m>{n}</m>".encode(), headers={})


class Broker:
    def __init__(self, url: str, transport: AmqpTransport, prefix: str) -> None:
        self.url = url
        self.transport = transport
        self.prefix = prefix

    async def declare(self, mnemonic: str) -> str:
        await self.transport.declare([mnemonic])
        return mnemonic

    async def take(self, participant: str) -> str:
        """The id of the next message in ``participant``'s request queue, acked."""
        delivery = await self.transport.get(REQ, participant)
        assert delivery is not None
        await delivery.ack()
        return delivery.message.message_id

    async def close_lane(self) -> int:
        return await close_broker_connections(lane_name(f"smevbus-test-{self.prefix}"))

    async def close_consumers(self) -> int:
        return await close_broker_connections(consumer_lane_name(f"smevbus-test-{self.prefix}"))


@pytest.fixture
async def broker(amqp_url: str) -> AsyncIterator[Broker]:
    prefix = f"l{uuid.uuid4().hex[:8]}_"
    with isolated_vhost(amqp_url) as url:
        transport = await AmqpTransport.connect(
            url, policy=POLICY, connection_name=f"smevbus-test-{prefix}", reconnect_timeout=WAIT
        )
        yield Broker(url, transport, prefix)
        await transport.close(grace=5)


async def test_only_the_lane_closed_publishes_and_gets_go_on(broker: Broker) -> None:
    zags = await broker.declare("ZAGS")
    await broker.transport.publish(REQ, zags, message(1))
    with structlog.testing.capture_logs() as logs:
        assert await broker.close_lane() == 1
        await broker.transport.publish(REQ, zags, message(2))  # on a reopened lane
    assert "transport_reconnected" in [entry["event"] for entry in logs]
    assert [await broker.take(zags), await broker.take(zags)] == ["msg-1", "msg-2"]
    assert await broker.transport.get(REQ, zags) is None


async def test_a_pulled_message_settled_after_its_channel_went_comes_back(
    broker: Broker,
) -> None:
    zags = await broker.declare("ZAGS")
    await broker.transport.publish(REQ, zags, message(1))
    held = await broker.transport.get(REQ, zags)
    assert held is not None
    assert await broker.close_lane() == 1
    with structlog.testing.capture_logs() as logs:
        await held.ack()  # its channel is gone: nothing to ack it on
    assert "transport_settle_lost" in [entry["event"] for entry in logs]
    again = await broker.transport.get(REQ, zags)
    assert again is not None
    assert again.message == held.message
    assert again.delivery_count == 2
    await again.ack()
    assert await broker.transport.get(REQ, zags) is None


async def test_a_get_given_up_leaves_its_message_in_the_queue(broker: Broker) -> None:
    zags = await broker.declare("ZAGS")
    await broker.transport.publish(REQ, zags, message(1))
    lane = AmqpLane(broker.url, f"smevbus-test-{broker.prefix}given-up")
    try:
        await lane.ready()
        getting = asyncio.create_task(lane.get(queue_name(REQ, zags)))
        await asyncio.sleep(0)  # the basic.get is on the wire; its answer is not in yet
        getting.cancel()
        with pytest.raises(asyncio.CancelledError):
            await getting

        async def get() -> LaneMessage | None:
            await lane.ready()  # a new channel for the next get
            return await lane.get(queue_name(REQ, zags))

        # Back in the queue once the broker has closed the old channel.
        pulled = await eventually(get)
        assert pulled.message_id == "msg-1"
        await pulled.ack()
    finally:
        await lane.close()
    assert await broker.transport.get(REQ, zags) is None


async def test_a_queue_gone_from_the_broker_is_not_declared_and_others_go_on(
    broker: Broker,
) -> None:
    zags = await broker.declare("ZAGS")
    fns = await broker.declare("FNS")
    connection = await aio_pika.connect(broker.url)
    async with connection, connection.channel() as channel:
        await channel.queue_delete(queue_name(REQ, zags))
    with pytest.raises(QueueNotDeclared):
        await broker.transport.get(REQ, zags)
    await broker.transport.publish(REQ, fns, message(1))
    assert await broker.take(fns) == "msg-1"


async def test_a_publish_the_broker_refuses_fails_and_the_next_goes_through(
    broker: Broker,
) -> None:
    zags = await broker.declare("ZAGS")
    lane = AmqpLane(broker.url, f"smevbus-test-{broker.prefix}refused")
    exchange = exchange_name(REQ)
    try:
        await lane.ready()
        # The broker closes the channel (406 PRECONDITION_FAILED): no retry mends that.
        bad = pika.BasicProperties(message_id="bad", expiration="never")
        with pytest.raises(Refused, match="406"):
            await lane.publish(exchange, zags, b"<m/>", bad)
        await lane.ready()  # a new channel
        good = pika.BasicProperties(message_id="good", delivery_mode=2)
        await lane.publish(exchange, zags, b"<m/>", good)
    finally:
        await lane.close()
    assert await broker.take(zags) == "good"


async def test_a_consumer_whose_connection_goes_consumes_again(broker: Broker) -> None:
    zags = await broker.declare("ZAGS")
    received: asyncio.Queue[str] = asyncio.Queue()

    async def collect(delivery: Delivery) -> None:
        await delivery.ack()
        received.put_nowait(delivery.message.message_id)

    subscription = await broker.transport.consume(REQ, zags, collect)
    await broker.transport.publish(REQ, zags, message(1))
    assert await asyncio.wait_for(received.get(), WAIT) == "msg-1"
    with structlog.testing.capture_logs() as logs:
        assert await broker.close_consumers() == 1
        await broker.transport.publish(REQ, zags, message(2))  # waits for the consumer
        assert await asyncio.wait_for(received.get(), WAIT) == "msg-2"
    assert "transport_resubscribed" in [entry["event"] for entry in logs]
    await subscription.cancel()
    assert (await broker.transport.counts(REQ, zags)).consumers == 0
