"""In-process transport: the same semantics as RabbitMQ, for the demo and fast tests.

A real, supported implementation of :class:`~gateway.transport.base.Transport`
(one process, no durability). It mirrors the AMQP topology of
:mod:`gateway.transport.topology` queue by queue: per participant and direction a
main queue with a delivery limit, a dead-letter list, and delayed retries.

Time: end of life (``Message.expires_at``) is compared with the injected
:class:`~gateway.core.clock.Clock`, so a :class:`~gateway.core.clock.FakeClock`
drives expiry; expired messages are dead-lettered when the transport next looks
at their queue (any call on it, and every delivery). Durations (retry delays,
visibility timeout) run on the event loop's timer, like the broker's TTLs.

Dead-letter events (:meth:`MemoryTransport.watch_dead_letters`) are kept from the
first watch on, like the RabbitMQ events queue, and handed to one watcher each at
the moment a message is dead-lettered.
"""

from __future__ import annotations

import asyncio
from collections import deque
from collections.abc import Callable, Collection, Iterable
from dataclasses import dataclass, field
from datetime import timedelta

import structlog

from gateway.core.clock import Clock, SystemClock
from gateway.transport.base import (
    DeadLetter,
    DeadLetterEvent,
    DeadLetterHandler,
    DeadLetterReason,
    Delivery,
    Direction,
    Handler,
    Message,
    QueueCounts,
    redelivery_pause,
    run_handler,
)
from gateway.transport.errors import QueueNotDeclared, TransportUnavailable
from gateway.transport.topology import QueuePolicy, check_participant, queue_name

log = structlog.get_logger(__name__)


@dataclass(slots=True)
class _Entry:
    message: Message
    #: Failed deliveries so far (the broker's ``x-delivery-count``).
    returns: int = 0
    retries: int = 0


@dataclass(slots=True)
class _Queue:
    name: str
    direction: Direction
    participant: str
    ready: deque[_Entry] = field(default_factory=deque)
    dead: list[DeadLetter] = field(default_factory=list)
    #: Deliveries handed out and not yet settled.
    unacked: int = 0
    consumers: int = 0
    #: Set on every change a waiting consumer may care about.
    changed: asyncio.Event = field(default_factory=asyncio.Event)


class _MemoryDelivery(Delivery):
    def __init__(self, transport: MemoryTransport, queue: _Queue, entry: _Entry) -> None:
        super().__init__(
            entry.message,
            delivery_count=entry.returns + 1,
            retries=entry.retries,
            retry_delays=transport.policy.retry_delays,
        )
        self._transport = transport
        self._queue = queue
        self._entry = entry
        queue.unacked += 1
        self.on_settle(self._settled_here)

    def _settled_here(self) -> None:
        self._queue.unacked -= 1

    async def _ack(self) -> None:
        self._queue.changed.set()

    async def _requeue(self) -> None:
        self._transport._return(self._queue, self._entry)

    async def _dead_letter(self, reason: DeadLetterReason, detail: str) -> None:
        self._transport._dead_letter(self._queue, self._entry.message, reason, detail)

    async def _retry(self, attempt: int, delay: timedelta) -> None:
        self._transport._retry_after(self._queue, _Entry(self._entry.message, 0, attempt), delay)


class _MemorySubscription:
    def __init__(
        self, transport: MemoryTransport, queue: _Queue, handler: Handler, prefetch: int
    ) -> None:
        self._transport = transport
        self._queue = queue
        self._handler = handler
        self._prefetch = prefetch
        self._unsettled = 0
        self._handlers: set[asyncio.Task[None]] = set()
        self._pump = asyncio.create_task(self._run(), name=f"consume {queue.name}")
        queue.consumers += 1

    async def _run(self) -> None:
        queue = self._queue
        while True:
            self._transport._expire(queue)
            if self._unsettled >= self._prefetch or not queue.ready:
                # Check, clear and wait with no await in between: no lost wake-up.
                queue.changed.clear()
                await queue.changed.wait()
                continue
            delivery = _MemoryDelivery(self._transport, queue, queue.ready.popleft())
            self._unsettled += 1
            delivery.on_settle(self._settled)
            task = asyncio.create_task(run_handler(self._handler, delivery))
            self._handlers.add(task)
            task.add_done_callback(self._handlers.discard)

    def _settled(self) -> None:
        self._unsettled -= 1
        self._queue.changed.set()

    def stop(self) -> None:
        if self in self._transport._subscriptions:
            self._queue.consumers -= 1
        self._pump.cancel()
        self._transport._subscriptions.discard(self)

    async def drain(self, grace: float | None) -> None:
        if self._handlers:
            _, pending = await asyncio.wait(set(self._handlers), timeout=grace)
            for task in pending:
                task.cancel()
            await asyncio.gather(*pending, return_exceptions=True)

    async def cancel(self) -> None:
        self.stop()
        await self.drain(None)


@dataclass(slots=True)
class _Events:
    pending: deque[DeadLetterEvent] = field(default_factory=deque)
    changed: asyncio.Event = field(default_factory=asyncio.Event)


class _MemoryDeadLetterWatch:
    """Takes dead-letter events one at a time and hands each to ``handler`` until it returns."""

    def __init__(
        self,
        events: _Events,
        handler: DeadLetterHandler,
        on_stop: Callable[[_MemoryDeadLetterWatch], None],
    ) -> None:
        self._events = events
        self._handler = handler
        self._on_stop = on_stop
        self._stopping = asyncio.Event()
        self._pump = asyncio.create_task(self._run(), name="watch dead letters")

    async def _run(self) -> None:
        events = self._events
        while not self._stopping.is_set():
            if not events.pending:
                events.changed.clear()
                await events.changed.wait()
                continue
            event = events.pending.popleft()
            recorded = False
            try:
                recorded = await self._handle(event)
            finally:
                if not recorded:  # stopped (or cancelled) before it was recorded
                    events.pending.appendleft(event)
                    events.changed.set()

    async def _handle(self, event: DeadLetterEvent) -> bool:
        failures = 0
        while True:
            try:
                await self._handler(event)
                return True
            except Exception:
                failures += 1
                log.exception(
                    "dead_letter_handler_failed",
                    message_id=event.letter.message.message_id,
                    failures=failures,
                )
            try:
                await asyncio.wait_for(self._stopping.wait(), redelivery_pause(failures))
                return False
            except TimeoutError:
                pass

    async def stop(self, grace: float | None) -> None:
        """Let a running handler call finish (up to ``grace`` s), take no more events."""
        self._on_stop(self)
        self._stopping.set()
        self._events.changed.set()  # wake an idle pump; other watchers just look again
        _, pending = await asyncio.wait({self._pump}, timeout=grace)
        for task in pending:
            task.cancel()
        await asyncio.gather(*pending, return_exceptions=True)

    async def cancel(self) -> None:
        await self.stop(None)


class MemoryTransport:
    """An in-process :class:`~gateway.transport.base.Transport`."""

    def __init__(self, *, clock: Clock | None = None, policy: QueuePolicy | None = None) -> None:
        self.clock: Clock = clock or SystemClock()
        self.policy = policy or QueuePolicy()
        self._queues: dict[str, _Queue] = {}
        self._subscriptions: set[_MemorySubscription] = set()
        #: Dead-letter events not yet handled; ``None`` until the first watch.
        self._events: _Events | None = None
        self._watches: set[_MemoryDeadLetterWatch] = set()
        self._timers: set[asyncio.TimerHandle] = set()
        self._closing = False
        self._closed = False

    async def declare(self, participants: Iterable[str]) -> None:
        self._check_open()
        for participant in participants:
            for direction in Direction:
                name = queue_name(direction, participant)
                self._queues.setdefault(name, _Queue(name, direction, participant))

    async def publish(self, direction: Direction, participant: str, message: Message) -> None:
        queue = self._queue(direction, check_participant(participant))
        queue.ready.append(_Entry(message))
        self._expire(queue)
        queue.changed.set()

    async def consume(
        self,
        direction: Direction,
        participant: str,
        handler: Handler,
        *,
        prefetch: int | None = None,
    ) -> _MemorySubscription:
        queue = self._queue(direction, participant)
        subscription = _MemorySubscription(self, queue, handler, prefetch or self.policy.prefetch)
        self._subscriptions.add(subscription)
        return subscription

    async def get(self, direction: Direction, participant: str) -> Delivery | None:
        queue = self._queue(direction, participant)
        self._expire(queue)
        if not queue.ready:
            return None
        delivery = _MemoryDelivery(self, queue, queue.ready.popleft())
        timer = asyncio.get_running_loop().call_later(
            self.policy.visibility_timeout.total_seconds(), self._lapse, queue, delivery
        )
        self._timers.add(timer)
        delivery.on_settle(timer.cancel)
        delivery.on_settle(lambda: self._timers.discard(timer))
        return delivery

    async def dead_letters(
        self, direction: Direction, participant: str, *, limit: int = 100
    ) -> list[DeadLetter]:
        queue = self._queue(direction, participant)
        self._expire(queue)
        return queue.dead[:limit]

    async def replay(
        self,
        direction: Direction,
        participant: str,
        message_ids: Collection[str] | None = None,
    ) -> int:
        queue = self._queue(direction, participant)
        wanted = [
            d for d in queue.dead if message_ids is None or d.message.message_id in message_ids
        ]
        queue.dead = [d for d in queue.dead if d not in wanted]
        queue.ready.extend(_Entry(d.message) for d in wanted)
        self._expire(queue)
        queue.changed.set()
        return len(wanted)

    async def purge(
        self, direction: Direction, participant: str, message_ids: Collection[str]
    ) -> int:
        queue = self._queue(direction, participant)
        kept = [d for d in queue.dead if d.message.message_id not in message_ids]
        dropped = len(queue.dead) - len(kept)
        queue.dead = kept
        queue.changed.set()
        return dropped

    async def dead_letter_count(self, direction: Direction, participant: str) -> int:
        queue = self._queue(direction, participant)
        self._expire(queue)
        return len(queue.dead)

    async def watch_dead_letters(self, handler: DeadLetterHandler) -> _MemoryDeadLetterWatch:
        self._check_open()
        if self._events is None:
            self._events = _Events()
        watch = _MemoryDeadLetterWatch(self._events, handler, self._watches.discard)
        self._watches.add(watch)
        return watch

    async def depth(self, direction: Direction, participant: str) -> int:
        queue = self._queue(direction, participant)
        self._expire(queue)
        return len(queue.ready)

    async def counts(self, direction: Direction, participant: str) -> QueueCounts:
        queue = self._queue(direction, participant)
        self._expire(queue)
        return QueueCounts(len(queue.ready), queue.unacked, queue.consumers, len(queue.dead))

    async def close(self, grace: float = 30.0) -> None:
        if self._closing:
            return
        self._closing = True
        subscriptions = list(self._subscriptions)
        for subscription in subscriptions:
            subscription.stop()
        await asyncio.gather(*(s.drain(grace) for s in subscriptions))
        await asyncio.gather(*(w.stop(grace) for w in list(self._watches)))
        for timer in self._timers:
            timer.cancel()
        self._timers.clear()
        self._closed = True

    # Operations the deliveries call back into.

    def _return(self, queue: _Queue, entry: _Entry) -> None:
        entry.returns += 1
        if entry.returns >= self.policy.max_deliveries:
            detail = f"delivered {entry.returns} times without an ack"
            self._dead_letter(queue, entry.message, DeadLetterReason.DELIVERY_LIMIT, detail)
        else:
            queue.ready.appendleft(entry)
        queue.changed.set()

    def _lapse(self, queue: _Queue, delivery: _MemoryDelivery) -> None:
        if not delivery.settled:
            delivery._claim()
            self._return(queue, delivery._entry)

    def _dead_letter(
        self, queue: _Queue, message: Message, reason: DeadLetterReason, detail: str
    ) -> None:
        letter = DeadLetter(message, reason, detail)
        queue.dead.append(letter)
        queue.changed.set()
        if self._events is not None:
            self._events.pending.append(DeadLetterEvent(queue.direction, queue.participant, letter))
            self._events.changed.set()

    def _retry_after(self, queue: _Queue, entry: _Entry, delay: timedelta) -> None:
        def come_back() -> None:
            self._timers.discard(timer)
            queue.ready.append(entry)
            queue.changed.set()

        timer = asyncio.get_running_loop().call_later(delay.total_seconds(), come_back)
        self._timers.add(timer)
        queue.changed.set()

    def _expire(self, queue: _Queue) -> None:
        now = self.clock.now()
        expired = [e for e in queue.ready if e.message.expires_at and e.message.expires_at <= now]
        for entry in expired:
            queue.ready.remove(entry)
            self._dead_letter(queue, entry.message, DeadLetterReason.EXPIRED, "end of life passed")

    def _queue(self, direction: Direction, participant: str) -> _Queue:
        self._check_open()
        try:
            return self._queues[queue_name(direction, participant)]
        except KeyError:
            raise QueueNotDeclared(
                f"no {direction} queue for participant {participant!r}",
                participant=participant,
                direction=str(direction),
            ) from None

    def _check_open(self) -> None:
        if self._closed:
            raise TransportUnavailable("transport is closed")
