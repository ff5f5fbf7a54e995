"""Names and arguments of every exchange and queue, shared by both transports.

For each declared participant and direction there are:

* ``smevbus.<direction>.<M>``: the main queue, a durable quorum queue bound to the
  direct exchange ``smevbus.<direction>`` with routing key ``<M>``; it has a
  delivery limit and dead-letters (delivery limit, expiry) to ``smevbus.dlx``;
* ``smevbus.dlq.<direction>.<M>``: its dead-letter queue, bound to ``smevbus.dlx``
  with key ``<direction>.<M>``;
* ``smevbus.retry.<direction>.<M>.<n>``: one delay queue per retry step ``n``; its
  TTL is the step's delay and it dead-letters back to the main queue.

Once someone watches dead letters (``watch_dead_letters``), one more queue,
``smevbus.deadletter.events``, is bound to ``smevbus.dlx`` with every declared
participant's dead-letter key, next to that participant's DLQ. A direct exchange
hands a message to every queue bound with its key, so each dead letter (whether the
broker or the transport dead-lettered it) is copied there: the DLQ keeps it for
listing and replay, the events copy tells the watcher and is acked once recorded.
The routing key of the copy, ``<direction>.<M>``, says whose it was.

Queue arguments are fixed when a queue is first declared: RabbitMQ refuses a
redeclaration with different ones, so a changed :class:`QueuePolicy` needs new
queues (or a broker policy), not just a restart.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

from gateway.transport.base import Direction

DEAD_LETTER_EXCHANGE = "smevbus.dlx"
DEAD_LETTER_EVENTS_QUEUE = "smevbus.deadletter.events"

_MNEMONIC = re.compile(r"[A-Za-z0-9_-]{1,64}")


@dataclass(frozen=True, slots=True)
class QueuePolicy:
    """Delivery rules shared by every queue a transport declares."""

    #: Deliveries (first one included) before a message is dead-lettered.
    max_deliveries: int = 5
    #: Delay before retry 1, 2, ...; ``retry_later`` past the last one dead-letters.
    retry_delays: tuple[timedelta, ...] = (
        timedelta(seconds=5),
        timedelta(seconds=30),
        timedelta(minutes=2),
        timedelta(minutes=10),
    )
    #: How long a pulled (``get``) message stays invisible before it comes back.
    visibility_timeout: timedelta = timedelta(minutes=1)
    #: Unsettled deliveries a push consumer may hold at once.
    prefetch: int = 32

    def __post_init__(self) -> None:
        if self.max_deliveries < 1:
            raise ValueError("max_deliveries must be at least 1")
        if self.prefetch < 1:
            raise ValueError("prefetch must be at least 1")
        if any(delay <= timedelta(0) for delay in self.retry_delays):
            raise ValueError("retry delays must be positive")
        if self.visibility_timeout <= timedelta(0):
            raise ValueError("visibility_timeout must be positive")


def check_participant(participant: str) -> str:
    """The mnemonic, if it is safe inside queue names and routing keys."""
    if not _MNEMONIC.fullmatch(participant):
        raise ValueError(f"invalid participant mnemonic {participant!r}")
    return participant


def exchange_name(direction: Direction) -> str:
    return f"smevbus.{direction}"


def queue_name(direction: Direction, participant: str) -> str:
    return f"smevbus.{direction}.{check_participant(participant)}"


def dead_letter_queue_name(direction: Direction, participant: str) -> str:
    return f"smevbus.dlq.{direction}.{check_participant(participant)}"


def dead_letter_key(direction: Direction, participant: str) -> str:
    return f"{direction}.{check_participant(participant)}"


def parse_dead_letter_key(key: str) -> tuple[Direction, str]:
    """The direction and participant a dead-letter routing key names; ``ValueError`` if none."""
    direction, _, participant = key.partition(".")
    return Direction(direction), check_participant(participant)


def retry_queue_name(direction: Direction, participant: str, attempt: int) -> str:
    return f"smevbus.retry.{direction}.{check_participant(participant)}.{attempt}"


def all_queue_names(direction: Direction, participant: str, policy: QueuePolicy) -> list[str]:
    """Every queue :func:`declare` makes for one participant and direction."""
    return [
        queue_name(direction, participant),
        dead_letter_queue_name(direction, participant),
        *(
            retry_queue_name(direction, participant, n)
            for n in range(1, len(policy.retry_delays) + 1)
        ),
    ]


def _at_least_once_dead_lettering(routing_key: str, exchange: str) -> dict[str, Any]:
    # at-least-once keeps a message in the source queue until the target confirms
    # it; RabbitMQ only allows it together with reject-publish overflow.
    return {
        "x-queue-type": "quorum",
        "x-dead-letter-exchange": exchange,
        "x-dead-letter-routing-key": routing_key,
        "x-dead-letter-strategy": "at-least-once",
        "x-overflow": "reject-publish",
    }


def main_queue_arguments(
    direction: Direction, participant: str, policy: QueuePolicy
) -> dict[str, Any]:
    arguments = _at_least_once_dead_lettering(
        dead_letter_key(direction, participant), DEAD_LETTER_EXCHANGE
    )
    # RabbitMQ counts returns, not deliveries: the limit is the returns allowed.
    arguments["x-delivery-limit"] = policy.max_deliveries - 1
    return arguments


def retry_queue_arguments(
    direction: Direction, participant: str, delay: timedelta
) -> dict[str, Any]:
    arguments = _at_least_once_dead_lettering(
        check_participant(participant), exchange_name(direction)
    )
    arguments["x-message-ttl"] = int(delay.total_seconds() * 1000)
    return arguments


def dead_letter_events_queue_arguments() -> dict[str, Any]:
    # Classic like the DLQs: a quorum queue's delivery limit (20 by default on
    # RabbitMQ 4) would drop an event whose handler kept failing.
    return {"x-queue-type": "classic"}


def dead_letter_queue_arguments() -> dict[str, Any]:
    # Classic, not quorum: listing peeks by getting and returning messages, which
    # a classic queue puts back in place and a quorum queue would count as
    # deliveries (and drop past a delivery limit on RabbitMQ 4, default 20).
    return {"x-queue-type": "classic"}
