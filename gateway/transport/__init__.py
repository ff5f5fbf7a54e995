"""Moving messages between the router and participants: see :mod:`gateway.transport.base`."""

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
    Subscription,
    Transport,
)
from gateway.transport.errors import (
    DeliveryNotHeld,
    PublishRefused,
    QueueNotDeclared,
    TransportUnavailable,
)
from gateway.transport.memory import MemoryTransport
from gateway.transport.topology import QueuePolicy

__all__ = [
    "DeadLetter",
    "DeadLetterEvent",
    "DeadLetterHandler",
    "DeadLetterReason",
    "Delivery",
    "DeliveryNotHeld",
    "Direction",
    "Handler",
    "MemoryTransport",
    "Message",
    "PublishRefused",
    "QueueCounts",
    "QueueNotDeclared",
    "QueuePolicy",
    "Subscription",
    "Transport",
    "TransportUnavailable",
]
