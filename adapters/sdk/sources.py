"""Where an adapter's requests come from: the seam between pull (SOAP) and push (AMQP).

The runner only needs "the next delivered request, or none" and "settle it once
answered". :class:`PullSource` does that with SOAP ``GetRequest``/``Ack`` through a
:class:`~gateway.client.participant.ParticipantClient` (which has already verified
the bus's and the consumer's signatures when it hands a delivery over). A push source
over RabbitMQ implements the same two methods: ``next`` takes from a consumer's
prefetch buffer, ``ack`` acks the AMQP delivery.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol

from gateway import request_id as request_ids
from gateway.client.participant import ParticipantClient
from gateway.xml.messages import RequestDelivery


class InboundRequest(Protocol):
    """One delivered request, verified, waiting to be answered and then acked."""

    @property
    def delivery(self) -> RequestDelivery: ...

    @property
    def request_id(self) -> str | None:
        """The request id it was published under (:mod:`gateway.request_id`), if known."""
        ...

    async def ack(self) -> None:
        """Settle the delivery; call only after the answer was accepted by the bus."""
        ...


class RequestSource(Protocol):
    async def next(self) -> InboundRequest | None:
        """The next request, or None when there is none right now (do not block long)."""
        ...


@dataclass(frozen=True, eq=False)
class PulledRequest:
    """A request taken by ``GetRequest``; acked by SOAP ``Ack``."""

    delivery: RequestDelivery
    client: ParticipantClient
    #: The request id the gateway answered GetRequest with (over HTTP: the message's).
    request_id: str | None = None

    async def ack(self) -> None:
        await self.client.ack(self.delivery.metadata.message_id)


class PullSource:
    """Pulls with ``GetRequest``; ``namespace`` narrows the selector to one message type."""

    def __init__(self, client: ParticipantClient, namespace: str | None = None) -> None:
        self.client = client
        self.namespace = namespace

    async def next(self) -> PulledRequest | None:
        delivery = await self.client.get_request(self.namespace)
        if delivery is None:
            return None
        return PulledRequest(delivery, self.client, request_ids.answered())
