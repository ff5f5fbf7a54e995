"""How a :class:`~gateway.transport.base.Message` is written to and read from AMQP.

The message id goes in the ``message_id`` property, the end of life both in a
header (exact, and kept across dead-lettering, which strips ``expiration``) and
as the per-message ``expiration`` (so the broker expires it while it waits), as
long as the broker takes it: an end of life further ahead than
:data:`MAX_BROKER_TTL` travels in the header alone (:func:`broker_ttl`).
Transport bookkeeping uses ``x-smevbus-*`` headers; the broker adds
``x-delivery-count`` (quorum queues) and ``x-death`` (dead-lettering).
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime, timedelta
from typing import Any, Protocol

import aio_pika
import pika

from gateway.transport.base import (
    RESERVED_HEADER_PREFIX,
    DeadLetter,
    DeadLetterEvent,
    DeadLetterReason,
    Message,
)
from gateway.transport.topology import parse_dead_letter_key, queue_name

EXPIRES_AT = "x-smevbus-expires-at"
RETRIES = "x-smevbus-retries"
DEAD_REASON = "x-smevbus-dead-reason"
DEAD_DETAIL = "x-smevbus-dead-detail"
DELIVERY_COUNT = "x-delivery-count"

#: The longest per-message ``expiration`` every RabbitMQ takes: 2^32 - 1 ms (about 49.7
#: days, Erlang's timer limit; 3.10 takes up to ten years). A longer one is refused with
#: ``PRECONDITION_FAILED invalid expiration ... value_too_large``, closing the channel.
MAX_BROKER_TTL = timedelta(milliseconds=2**32 - 1)


def broker_ttl(expires_at: datetime, now: datetime) -> timedelta | None:
    """The per-message TTL for an end of life: the time left, or None when that is more
    than the broker takes.

    Not clamped to :data:`MAX_BROKER_TTL`: the broker would then dead-letter as expired,
    after 49 days, a message whose end of life is years ahead. Without a TTL the
    message waits, and the transport's own check on delivery (the header) expires it at
    its exact end of life, as it does for a message back from a retry queue.
    """
    left = max(expires_at - now, timedelta(0))
    return None if left > MAX_BROKER_TTL else left


_MILLISECOND = timedelta(milliseconds=1)


def to_properties(
    message: Message,
    now: datetime,
    *,
    retries: int = 0,
    extra: Mapping[str, str] | None = None,
    broker_expiry: bool = True,
) -> Any:
    """The AMQP properties of ``message`` (pika's: the lane publishes): persistent, its
    id, its headers and end of life, and (``broker_expiry``) the per-message TTL the
    broker expires it by."""
    headers: dict[str, Any] = dict(message.headers)
    expiration: str | None = None
    if message.expires_at is not None:
        headers[EXPIRES_AT] = message.expires_at.isoformat()
        if broker_expiry:
            ttl = broker_ttl(message.expires_at, now)
            if ttl is not None:
                expiration = str(ttl // _MILLISECOND)
    if retries:
        headers[RETRIES] = retries
    if extra:
        headers.update(extra)
    return pika.BasicProperties(
        message_id=message.message_id,
        headers=headers,
        expiration=expiration,
        delivery_mode=pika.DeliveryMode.Persistent.value,
    )


class Incoming(Protocol):
    """What the transport reads and settles of a message the broker handed over: an
    aio-pika ``IncomingMessage`` (sweeps, the dead-letter watch) or one pulled or
    consumed on a lane (:class:`~gateway.transport.amqp_lane.LaneMessage`)."""

    @property
    def body(self) -> bytes: ...

    @property
    def headers(self) -> Mapping[str, Any]: ...

    @property
    def message_id(self) -> str | None: ...

    async def ack(self) -> None: ...

    async def nack(self, *, requeue: bool = True) -> None: ...


def from_amqp(incoming: Incoming) -> Message:
    headers = incoming.headers or {}
    expires_at = headers.get(EXPIRES_AT)
    return Message(
        message_id=incoming.message_id or "",
        body=incoming.body,
        headers={
            str(k): _text(v) for k, v in headers.items() if not k.startswith(RESERVED_HEADER_PREFIX)
        },
        expires_at=datetime.fromisoformat(str(expires_at)) if expires_at else None,
    )


def delivery_count(incoming: Incoming) -> int:
    """1 for a first delivery; quorum queues count earlier failed ones."""
    return int(str((incoming.headers or {}).get(DELIVERY_COUNT, 0))) + 1


def retries(incoming: Incoming) -> int:
    return int(str((incoming.headers or {}).get(RETRIES, 0)))


def dead_letter_from_amqp(
    incoming: aio_pika.abc.AbstractIncomingMessage, main_queue: str
) -> DeadLetter:
    """Why a message sits in a dead-letter queue, whoever put it there.

    The transport writes its own reason header; the broker records each
    dead-lettering in ``x-death``. Only deaths in the main queue count: a trip
    through a retry queue also leaves an ``expired`` entry there.
    """
    headers = incoming.headers or {}
    message = from_amqp(incoming)
    if DEAD_REASON in headers:
        return DeadLetter(
            message,
            DeadLetterReason(_text(headers[DEAD_REASON])),
            _text(headers.get(DEAD_DETAIL, "")),
        )
    deaths = headers.get("x-death")
    for death in deaths if isinstance(deaths, list) else []:
        if isinstance(death, dict) and death.get("queue") == main_queue:
            reason = _text(death.get("reason", ""))
            if reason == "expired":
                return DeadLetter(message, DeadLetterReason.EXPIRED, "end of life passed")
            if reason == "delivery_limit":
                return DeadLetter(
                    message, DeadLetterReason.DELIVERY_LIMIT, "delivery limit reached"
                )
            return DeadLetter(message, DeadLetterReason.REJECTED, f"broker reason {reason!r}")
    return DeadLetter(message, DeadLetterReason.REJECTED, "unknown dead-letter origin")


def dead_letter_event_from_amqp(incoming: aio_pika.abc.AbstractIncomingMessage) -> DeadLetterEvent:
    """The event a copy in the dead-letter events queue stands for.

    Its routing key is the dead-letter key, ``<direction>.<participant>``; raises
    ``ValueError`` when it is not one (nothing of ours put it there).
    """
    direction, participant = parse_dead_letter_key(incoming.routing_key or "")
    letter = dead_letter_from_amqp(incoming, queue_name(direction, participant))
    return DeadLetterEvent(direction, participant, letter)


def _text(value: object) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)
