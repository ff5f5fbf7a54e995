"""Publishing to RabbitMQ: persistent, ``mandatory``, confirmed, and riding out reconnects."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

import aiormq
import structlog
from tenacity import (
    AsyncRetrying,
    RetryError,
    retry_if_exception_type,
    stop_after_delay,
    wait_incrementing,
)

from gateway.core.clock import Clock
from gateway.transport import amqp_wire
from gateway.transport.amqp_lane import AmqpLane, NotFound, Refused, Unroutable
from gateway.transport.base import DeadLetterReason, Direction, Message
from gateway.transport.errors import PublishRefused, QueueNotDeclared, TransportUnavailable
from gateway.transport.topology import DEAD_LETTER_EXCHANGE, dead_letter_key, retry_queue_name

log = structlog.get_logger(__name__)

#: Failures a reconnect can cure.
TRANSIENT_ERRORS = (
    aiormq.exceptions.AMQPConnectionError,
    aiormq.exceptions.ChannelInvalidStateError,
    ConnectionError,
    TimeoutError,
)

T = TypeVar("T")

#: 50 ms after the first failure, 50 ms more after each, at most 1 s: the robust
#: connection may not have noticed the loss yet.
RECONNECT_BACKOFF_FIRST = 0.05
RECONNECT_BACKOFF = wait_incrementing(start=RECONNECT_BACKOFF_FIRST + 0.05, increment=0.05, max=1.0)


async def ride_out_reconnects(
    ready: Callable[[], Awaitable[object]],
    give_up_after: float,
    operation: Callable[[float], Awaitable[T]],
    what: str,
    *,
    attempt_cap: float | None = None,
) -> T:
    """Run ``operation(seconds_left)`` once ``ready()`` returned, again after a lost connection.

    Gives up with :class:`TransportUnavailable` after ``give_up_after`` s. Other errors
    pass through. Only for operations that are safe to repeat. Each attempt is bounded
    by the time left (and by ``attempt_cap`` s): operations need not pass a timeout on
    to aio-pika, which would wrap its call in ``wait_for`` (a task and a timer more).

    The first attempt runs without the retry machinery (a tenacity loop costs ~30 us,
    and every publish, get and ack of the hot path comes this way); only a failure a
    reconnect can cure goes on to the retrying loop, as its second attempt.
    """
    loop = asyncio.get_running_loop()
    deadline = loop.time() + give_up_after
    try:
        return await _attempt(ready, operation, deadline, attempt_cap, loop)
    except TRANSIENT_ERRORS as exc:
        if loop.time() >= deadline:
            raise TransportUnavailable(f"{what} failed: {exc!r}") from exc
        _log_retry(what, 1, exc)
    await asyncio.sleep(min(RECONNECT_BACKOFF_FIRST, deadline - loop.time()))
    retrying = AsyncRetrying(
        retry=retry_if_exception_type(TRANSIENT_ERRORS),
        stop=stop_after_delay(deadline - loop.time()),
        wait=RECONNECT_BACKOFF,
        before_sleep=lambda state: _log_retry(
            what,
            state.attempt_number + 1,
            state.outcome.exception() if state.outcome else None,
        ),
    )
    try:
        async for attempt in retrying:
            with attempt:
                return await _attempt(ready, operation, deadline, attempt_cap, loop)
    except RetryError as exc:
        error = exc.last_attempt.exception()
        raise TransportUnavailable(f"{what} failed: {error!r}") from error
    raise AssertionError("AsyncRetrying ends in a return or an exception")


async def _attempt(
    ready: Callable[[], Awaitable[object]],
    operation: Callable[[float], Awaitable[T]],
    deadline: float,
    cap: float | None,
    loop: asyncio.AbstractEventLoop,
) -> T:
    seconds_left = max(deadline - loop.time(), 0.001)
    # One timer for the whole attempt: wait_for would add a task and a timer to each
    # step. Its TimeoutError is transient: the attempt is made again while time is left.
    async with asyncio.timeout(seconds_left if cap is None else min(seconds_left, cap)):
        # A reconnected connection is not enough: the channel reopens after it.
        await ready()
        return await operation(seconds_left)


def _log_retry(what: str, attempt: int, error: BaseException | None) -> None:
    log.warning("transport_retry", operation=what, attempt=attempt, error=repr(error))


class ConfirmedPublisher:
    """Publishes on the lane's confirm-mode channel (:mod:`gateway.transport.amqp_lane`).

    A publish interrupted by a lost connection is retried until ``timeout`` s have
    passed, then :class:`TransportUnavailable` is raised. A lost confirm may mean
    the broker has the message anyway: delivery is at-least-once, and consumers
    dedup by MessageID.
    """

    def __init__(self, lane: AmqpLane, clock: Clock, timeout: float) -> None:
        self._lane = lane
        self._clock = clock
        self._timeout = timeout

    async def publish(
        self,
        exchange: str,
        routing_key: str,
        message: Message,
        properties: Any,
        participant: str,
    ) -> None:
        async def attempt(_: float) -> None:
            await self._lane.publish(exchange, routing_key, message.body, properties)

        try:
            await ride_out_reconnects(self._lane.ready, self._timeout, attempt, "publish")
        except Unroutable as exc:
            raise QueueNotDeclared(
                f"unroutable: no queue for {routing_key!r} on {exchange!r}",
                participant=participant,
            ) from exc
        except Refused as exc:
            raise PublishRefused(f"broker refused the message: {exc}") from exc
        except NotFound as exc:
            raise QueueNotDeclared(
                f"unroutable: exchange {exchange!r} does not exist", participant=participant
            ) from exc

    async def dead_letter(
        self,
        direction: Direction,
        participant: str,
        message: Message,
        reason: DeadLetterReason,
        detail: str,
    ) -> None:
        """Put ``message`` in the dead-letter queue, with the reason in headers."""
        extra = {amqp_wire.DEAD_REASON: str(reason), amqp_wire.DEAD_DETAIL: detail}
        # The end of life stays in its header; a dead letter itself must not expire.
        properties = amqp_wire.to_properties(
            message, self._clock.now(), extra=extra, broker_expiry=False
        )
        key = dead_letter_key(direction, participant)
        await self.publish(DEAD_LETTER_EXCHANGE, key, message, properties, participant)

    async def retry(
        self, direction: Direction, participant: str, message: Message, attempt: int
    ) -> None:
        """Park ``message`` in the delay queue of retry step ``attempt``."""
        # The delay queue's TTL must decide when it comes back, not the end of
        # life (checked again on delivery).
        properties = amqp_wire.to_properties(
            message, self._clock.now(), retries=attempt, broker_expiry=False
        )
        name = retry_queue_name(direction, participant, attempt)
        await self.publish("", name, message, properties, participant)
