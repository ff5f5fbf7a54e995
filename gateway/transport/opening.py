"""The transport ``Settings`` name: memory (embedded default) or RabbitMQ."""

from __future__ import annotations

from datetime import timedelta

from gateway.config import Settings
from gateway.core.clock import Clock
from gateway.transport.amqp import AmqpTransport
from gateway.transport.base import Transport
from gateway.transport.memory import MemoryTransport
from gateway.transport.topology import QueuePolicy


async def open_transport(settings: Settings, clock: Clock) -> Transport:
    policy = QueuePolicy(
        visibility_timeout=timedelta(seconds=settings.visibility_timeout_s),
        prefetch=settings.prefetch,
    )
    if settings.transport == "memory":
        return MemoryTransport(clock=clock, policy=policy)
    return await AmqpTransport.connect(settings.amqp_url, clock=clock, policy=policy)
