"""RabbitMQ transport on aio-pika and pika, with the topology of :mod:`gateway.transport.topology`.

Reliability choices:

* one robust connection (``connect_robust``) for the topology, the dead-letter
  watch and sweeps; its channels re-declare the exchanges, queues, bindings and the
  watch's consumer after a reconnect;
* publishes and ``basic.get`` (the hot path), and the push consumers, go over two more
  connections, on pika (:mod:`gateway.transport.amqp_lane`: aio-pika's frames take
  several turns of the event loop each way), each opened by its first operation and
  again after a loss; a consumer whose channel went consumes again by itself
  (:class:`~gateway.transport.amqp_delivery.AmqpSubscription`). Publishing and
  consuming on connections apart is what RabbitMQ advises: a publisher it blocks
  (flow control, alarms) then stalls no consumer's acks;
* every publish is persistent, ``mandatory`` and confirmed; a publish (or any
  repeatable operation) interrupted by a lost connection is retried until
  ``reconnect_timeout`` s (at-least-once: a lost confirm can duplicate, the
  journal's MessageID dedups);
* dead-lettering by the transport itself (reject, expiry seen on delivery,
  exhausted retries) publishes to ``smevbus.dlx`` with a reason header, confirmed,
  then acks: the reason text survives, and nothing is acked before it is safe;
* pull (``get``) is ``basic.get`` with a manual ack and a local timer: a pulled
  message not settled within the visibility timeout is nacked back to its queue
  (counting as a failed delivery). If the process dies first, the broker
  returns it when the channel closes, so the timeout only speeds that up. The
  broker's ``consumer_timeout`` (30 min by default) must stay above it;
* dead-letter events: ``watch_dead_letters`` binds ``smevbus.deadletter.events``
  to ``smevbus.dlx`` next to every DLQ, so the broker copies each dead letter
  there, whoever dead-lettered it (:mod:`gateway.transport.amqp_deadletters`);
* end of life: the broker expires a waiting message (per-message expiration)
  and dead-letters it as ``expired``; dead-lettering strips ``expiration``, so a
  message back from a retry queue is only found expired when next delivered
  (the exact end of life travels in a header and is checked on every delivery).
  The same goes for an end of life further ahead than the broker's TTL limit
  (:func:`~gateway.transport.amqp_wire.broker_ttl`): it gets no TTL at all.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Collection, Iterable
from typing import Self, TypeVar

import aio_pika
import structlog
from aio_pika.abc import (
    AbstractIncomingMessage,
    AbstractQueue,
    AbstractRobustChannel,
    AbstractRobustConnection,
)

from gateway.core.clock import Clock, SystemClock
from gateway.transport import amqp_wire
from gateway.transport.amqp_deadletters import (
    AmqpDeadLetterWatch,
    bind_dead_letter_events,
    open_watch,
)
from gateway.transport.amqp_delivery import AmqpDelivery, AmqpSubscription, open_delivery
from gateway.transport.amqp_lane import AmqpLane, LaneMessage, NotFound
from gateway.transport.amqp_publish import (
    TRANSIENT_ERRORS,
    ConfirmedPublisher,
    ride_out_reconnects,
)
from gateway.transport.base import (
    DeadLetter,
    DeadLetterHandler,
    Delivery,
    Direction,
    Handler,
    Message,
    QueueCounts,
)
from gateway.transport.errors import QueueNotDeclared, TransportUnavailable
from gateway.transport.topology import (
    DEAD_LETTER_EXCHANGE,
    QueuePolicy,
    check_participant,
    dead_letter_key,
    dead_letter_queue_arguments,
    dead_letter_queue_name,
    exchange_name,
    main_queue_arguments,
    queue_name,
    retry_queue_arguments,
    retry_queue_name,
)

log = structlog.get_logger(__name__)

T = TypeVar("T")


#: Longest wait for the broker's answer to one basic.get before it is tried again (s).
GET_ATTEMPT_TIMEOUT = 5.0


def lane_name(connection_name: str) -> str:
    """The name the broker shows for the publish and get connection."""
    return f"{connection_name} (publish, get)"


def consumer_lane_name(connection_name: str) -> str:
    """The name the broker shows for the consumers' connection."""
    return f"{connection_name} (consume)"


class AmqpTransport:
    """A :class:`~gateway.transport.base.Transport` on RabbitMQ; make one with :meth:`connect`."""

    def __init__(
        self,
        connection: AbstractRobustConnection,
        topology: AbstractRobustChannel,
        lane: AmqpLane,
        consumer_lane: AmqpLane,
        *,
        policy: QueuePolicy,
        clock: Clock,
        reconnect_timeout: float,
    ) -> None:
        self.policy = policy
        self.clock = clock
        self._connection = connection
        self._topology = topology
        self._lane = lane
        self._consumer_lane = consumer_lane
        self._publisher = ConfirmedPublisher(lane, clock, reconnect_timeout)
        self._reconnect_timeout = reconnect_timeout
        self._queues: dict[str, AbstractQueue] = {}
        #: Each main queue's dead-letter queue, by the main queue's name.
        self._dead_queues: dict[str, AbstractQueue] = {}
        self._subscriptions: set[AmqpSubscription] = set()
        self._watches: set[AmqpDeadLetterWatch] = set()
        #: The DLQ routing keys of every declared queue.
        self._dead_letter_keys: set[str] = set()
        #: Whether dead letters are copied to the events queue (from the first watch on).
        self._watched = False
        self._timers: set[asyncio.TimerHandle] = set()
        self._lapses: set[asyncio.Task[None]] = set()
        self._closing = False
        self._closed = False

    @classmethod
    async def connect(
        cls,
        url: str,
        *,
        policy: QueuePolicy | None = None,
        clock: Clock | None = None,
        connection_name: str = "smevbus",
        reconnect_timeout: float = 30.0,
        reconnect_interval: float = 1.0,
    ) -> Self:
        try:
            connection = await aio_pika.connect_robust(
                url,
                client_properties={"connection_name": connection_name},
                reconnect_interval=reconnect_interval,
            )
        except TRANSIENT_ERRORS as exc:
            raise TransportUnavailable(f"cannot reach the broker: {exc}") from exc
        connection.reconnect_callbacks.add(
            lambda _: log.warning("transport_reconnected", connection=connection_name)
        )
        return cls(
            connection,
            await connection.channel(),
            # Each opened by the first operation on it: a push adapter may never publish,
            # a gateway whose participants all pull consumes nothing.
            AmqpLane(url, lane_name(connection_name)),
            AmqpLane(url, consumer_lane_name(connection_name)),
            policy=policy or QueuePolicy(),
            clock=clock or SystemClock(),
            reconnect_timeout=reconnect_timeout,
        )

    async def declare(self, participants: Iterable[str]) -> None:
        todo = list(participants)

        async def declare_all(_: float) -> None:
            await self._declare(todo)

        await self._ride_out(declare_all, "declare")

    async def _declare(self, participants: list[str]) -> None:
        channel = self._topology
        dlx = await channel.declare_exchange(
            DEAD_LETTER_EXCHANGE, aio_pika.ExchangeType.DIRECT, durable=True
        )
        for direction in Direction:
            exchange = await channel.declare_exchange(
                exchange_name(direction), aio_pika.ExchangeType.DIRECT, durable=True
            )
            for participant in participants:
                name = queue_name(direction, participant)
                if name in self._queues:
                    continue
                dlq = await channel.declare_queue(
                    dead_letter_queue_name(direction, participant),
                    durable=True,
                    arguments=dead_letter_queue_arguments(),
                )
                await dlq.bind(dlx, dead_letter_key(direction, participant))
                for attempt, delay in enumerate(self.policy.retry_delays, start=1):
                    await channel.declare_queue(
                        retry_queue_name(direction, participant, attempt),
                        durable=True,
                        arguments=retry_queue_arguments(direction, participant, delay),
                    )
                queue = await channel.declare_queue(
                    name,
                    durable=True,
                    arguments=main_queue_arguments(direction, participant, self.policy),
                )
                await queue.bind(exchange, participant)
                self._queues[name] = queue
                self._dead_queues[name] = dlq
                self._dead_letter_keys.add(dead_letter_key(direction, participant))
        if self._watched:
            await bind_dead_letter_events(channel, self._dead_letter_keys)

    async def publish(self, direction: Direction, participant: str, message: Message) -> None:
        if self._closed:
            raise TransportUnavailable("transport is closed")
        await self._publisher.publish(
            exchange_name(direction),
            check_participant(participant),
            message,
            amqp_wire.to_properties(message, self.clock.now()),
            participant,
        )

    async def consume(
        self,
        direction: Direction,
        participant: str,
        handler: Handler,
        *,
        prefetch: int | None = None,
    ) -> AmqpSubscription:
        name = self._declared(direction, participant).name
        subscription = AmqpSubscription(
            self._consumer_lane,
            name,
            prefetch or self.policy.prefetch,
            handler,
            lambda incoming: self._open(incoming, direction, participant),
            self._subscriptions.discard,
        )

        async def subscribe(_: float) -> None:
            await subscription.start()

        await ride_out_reconnects(
            self._consumer_lane.connected,
            self._reconnect_timeout,
            subscribe,
            f"consume from {name}",
        )
        self._subscriptions.add(subscription)
        return subscription

    async def get(self, direction: Direction, participant: str) -> Delivery | None:
        name = self._declared(direction, participant).name

        async def get_one(_: float) -> LaneMessage | None:
            return await self._lane.get(name)

        while True:
            # A basic.get in flight when the connection drops may never be answered; each
            # attempt is capped so it is retried on the reopened channel instead of
            # stalling the caller for the whole reconnect budget.
            try:
                incoming = await ride_out_reconnects(
                    self._lane.ready,
                    self._reconnect_timeout,
                    get_one,
                    f"get from {name}",
                    attempt_cap=GET_ATTEMPT_TIMEOUT,
                )
            except NotFound as exc:
                raise QueueNotDeclared(
                    f"queue {name!r} does not exist on the broker",
                    participant=participant,
                    direction=str(direction),
                ) from exc
            if incoming is None:
                return None
            delivery = await self._open(incoming, direction, participant)
            if delivery is not None:
                self._hold(delivery)
                return delivery

    async def dead_letters(
        self, direction: Direction, participant: str, *, limit: int = 100
    ) -> list[DeadLetter]:
        main = self._declared(direction, participant).name
        found: list[DeadLetter] = []

        async def collect(incoming: AbstractIncomingMessage) -> bool:
            found.append(amqp_wire.dead_letter_from_amqp(incoming, main))
            return False  # leave it: closing the channel puts it back in place

        await self._sweep_dead_letters(direction, participant, collect, limit)
        return found

    async def replay(
        self,
        direction: Direction,
        participant: str,
        message_ids: Collection[str] | None = None,
    ) -> int:
        self._declared(direction, participant)
        moved = 0

        async def move(incoming: AbstractIncomingMessage) -> bool:
            nonlocal moved
            if message_ids is not None and incoming.message_id not in message_ids:
                return False
            await self.publish(direction, participant, amqp_wire.from_amqp(incoming))
            moved += 1
            return True

        await self._sweep_dead_letters(direction, participant, move, None)
        return moved

    async def purge(
        self, direction: Direction, participant: str, message_ids: Collection[str]
    ) -> int:
        self._declared(direction, participant)
        dropped = 0

        async def drop(incoming: AbstractIncomingMessage) -> bool:
            nonlocal dropped
            if incoming.message_id not in message_ids:
                return False
            dropped += 1
            return True

        await self._sweep_dead_letters(direction, participant, drop, None)
        return dropped

    async def dead_letter_count(self, direction: Direction, participant: str) -> int:
        self._declared(direction, participant)
        name = dead_letter_queue_name(direction, participant)

        async def count(seconds_left: float) -> int:
            queue = await self._topology.declare_queue(
                name, durable=True, arguments=dead_letter_queue_arguments(), timeout=seconds_left
            )
            return int(queue.declaration_result.message_count or 0)

        return await self._ride_out(count, f"depth of {name}")

    async def watch_dead_letters(self, handler: DeadLetterHandler) -> AmqpDeadLetterWatch:
        if self._closed:
            raise TransportUnavailable("transport is closed")

        async def bind_and_subscribe(_: float) -> AmqpDeadLetterWatch:
            await bind_dead_letter_events(self._topology, self._dead_letter_keys)
            watch = await open_watch(
                self._connection, self.policy.prefetch, handler, self._watches.discard
            )
            self._watches.add(watch)
            return watch

        self._watched = True  # from now on, declare() binds new participants too
        return await self._ride_out(bind_and_subscribe, "watch dead letters")

    async def depth(self, direction: Direction, participant: str) -> int:
        queue = self._declared(direction, participant)

        async def count(seconds_left: float) -> int:
            declared = await queue.declare(timeout=seconds_left)
            return int(declared.message_count or 0)

        return await self._ride_out(count, f"depth of {queue.name}")

    async def counts(self, direction: Direction, participant: str) -> QueueCounts:
        """By declares, which change nothing (each queue again as it was): ready and
        consumers of the main queue, the depth of its dead-letter queue; unacked is not
        told (the management API knows it)."""
        queue = self._declared(direction, participant)
        dead_queue = self._dead_queues[queue.name]

        async def count(seconds_left: float) -> QueueCounts:
            main = await queue.declare(timeout=seconds_left)
            dead = await dead_queue.declare(timeout=seconds_left)
            return QueueCounts(
                ready=int(main.message_count or 0),
                unacked=None,
                consumers=int(main.consumer_count or 0),
                dead_letters=int(dead.message_count or 0),
            )

        return await self._ride_out(count, f"counts of {queue.name}")

    async def close(self, grace: float = 30.0) -> None:
        if self._closing:
            return
        self._closing = True
        subscriptions = list(self._subscriptions)
        for subscription in subscriptions:
            await subscription.stop()
        await asyncio.gather(*(s.drain(grace) for s in subscriptions))
        await asyncio.gather(*(w.stop(grace) for w in list(self._watches)))
        for timer in self._timers:
            timer.cancel()
        # Unsettled pulled messages go back when the connection closes.
        await asyncio.gather(*self._lapses, return_exceptions=True)
        self._closed = True
        await self._lane.close()
        await self._consumer_lane.close()
        await self._connection.close()

    def _open(
        self, incoming: amqp_wire.Incoming, direction: Direction, participant: str
    ) -> Awaitable[AmqpDelivery | None]:
        return open_delivery(
            incoming, direction, participant, self._publisher, self.policy.retry_delays, self.clock
        )

    def _hold(self, delivery: Delivery) -> None:
        def lapse() -> None:
            self._timers.discard(timer)
            task = asyncio.create_task(delivery.lapse())
            self._lapses.add(task)
            task.add_done_callback(self._lapses.discard)

        timer = asyncio.get_running_loop().call_later(
            self.policy.visibility_timeout.total_seconds(), lapse
        )
        self._timers.add(timer)
        delivery.on_settle(timer.cancel)
        delivery.on_settle(lambda: self._timers.discard(timer))

    async def _sweep_dead_letters(
        self,
        direction: Direction,
        participant: str,
        visit: Callable[[AbstractIncomingMessage], Awaitable[bool]],
        limit: int | None,
    ) -> None:
        """Get dead letters one by one on a private channel; ``visit`` says which to ack.

        The others stay unacked until the channel closes, so the sweep sees each
        message once and the broker puts the rest back where they were.
        """
        name = dead_letter_queue_name(direction, participant)

        async def sweep(_: float) -> None:
            # Repeatable after a lost connection: what was acked is gone, and
            # everything else went back when the channel died.
            channel = await self._connection.channel()
            try:
                queue = await channel.declare_queue(
                    name, durable=True, arguments=dead_letter_queue_arguments()
                )
                remaining = queue.declaration_result.message_count or 0
                if limit is not None:
                    remaining = min(remaining, limit)
                while remaining > 0:
                    incoming = await queue.get(no_ack=False, fail=False)
                    if incoming is None:
                        break
                    remaining -= 1
                    if await visit(incoming):
                        await incoming.ack()
            finally:
                await channel.close()

        await self._ride_out(sweep, f"read {name}")

    def _ride_out(self, operation: Callable[[float], Awaitable[T]], what: str) -> Awaitable[T]:
        """``operation`` on the topology channel, riding out reconnects."""
        return ride_out_reconnects(self._topology.ready, self._reconnect_timeout, operation, what)

    def _declared(self, direction: Direction, participant: str) -> AbstractQueue:
        if self._closed:
            raise TransportUnavailable("transport is closed")
        try:
            return self._queues[queue_name(direction, participant)]
        except KeyError:
            raise QueueNotDeclared(
                f"no {direction} queue declared for participant {participant!r}",
                participant=participant,
                direction=str(direction),
            ) from None
