"""A participant served inside the gateway process, on the router without SOAP.

The aggregator submits service requests for portals whose keys the gateway holds
(see :mod:`gateway.aggregator.service`). Going through ``/ws`` for that would have the
gateway check itself: wrap and parse a SOAP envelope, verify a signature it watched
being made, sign every reply and verify that signature again: eight signature
operations per reply that prove nothing. :class:`LocalParticipant` offers the
consumer's operations of :class:`~gateway.client.participant.ParticipantClient` straight
on the router instead. What leaves the gateway is unchanged: each request is signed
with the participant's own key, journaled, published and delivered exactly as one that
came over HTTP, and every reply is journaled and acknowledged the same way.
"""

from __future__ import annotations

import uuid
from collections.abc import Awaitable, Callable
from datetime import datetime

from lxml import etree

from gateway.core.clock import MessageIdSource
from gateway.core.envelope import MessageMetadata
from gateway.core.errors import InternalError
from gateway.core.registry import Participant
from gateway.crypto.envelope import sign_element
from gateway.crypto.xmldsig import XmlSigner
from gateway.router.moves import metadata
from gateway.router.router import Router
from gateway.transport.base import Direction
from gateway.xml import messages as m


class LocalParticipant:
    """SendRequest, GetResponse and Ack for ``participant``, in process."""

    def __init__(
        self, router: Router, participant: Participant, signer: XmlSigner, ids: MessageIdSource
    ) -> None:
        self.router = router
        self.participant = participant
        self.signer = signer
        self.ids = ids

    async def send_request(
        self,
        content: etree._Element,
        *,
        message_id: uuid.UUID | None = None,
        eol: datetime | None = None,
        test: bool = False,
    ) -> MessageMetadata:
        return await self.prepare_request(content, message_id=message_id, eol=eol, test=test)()

    def prepare_request(
        self,
        content: etree._Element,
        *,
        message_id: uuid.UUID | None = None,
        eol: datetime | None = None,
        test: bool = False,
    ) -> Callable[[], Awaitable[MessageMetadata]]:
        """:meth:`send_request` in two steps: the request built, signed and checked by
        the router now (CPU only: raises what the router would refuse), journaled and
        published when the returned function is awaited."""
        body = m.build_send_request(message_id or self.ids.new(), content, eol=eol, test=test)
        sign_element(body, self.signer)
        admitted = self.router.admit_request(body, self.participant)

        async def send() -> MessageMetadata:
            record, provider = await self.router.queue_request(admitted)
            return metadata(record, self.participant, provider, record.updated_at)

        return send

    async def get_response(self) -> m.ResponseDelivery | None:
        delivered = await self.router.take(self.participant.mnemonic, Direction.RESPONSES)
        if delivered is not None and not isinstance(delivered, m.ResponseDelivery):
            raise InternalError("a request was queued as a response")
        return delivered

    async def ack(self, message_id: uuid.UUID, *, accepted: bool = True) -> None:
        await self.router.settle(self.participant.mnemonic, str(message_id), accepted=accepted)
