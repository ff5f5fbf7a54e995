"""Push mode: an adapter's requests consumed straight from its participant's queue.

The router publishes each accepted request, the consumer-signed ``SendRequestRequest``
body, to ``requests.<provider>``. :class:`PushSource` consumes that queue through the
:class:`~gateway.transport.base.Transport` (memory or RabbitMQ alike) and hands the
runner the same :class:`~adapters.sdk.sources.InboundRequest` a pull would::

    delivery -> parse the stored body      bad    -> reject (dead letter, with why)
             -> consumer's signature over
                SenderProvidedRequestData  bad    -> reject (dead letter, with why)
             -> signer is the sender       no     -> reject (dead letter, with why)
             -> InboundRequest; ack() acks the delivery (the runner calls it only
                once SendResponse was accepted)

Answers still go to the gateway by SOAP ``SendResponse`` (the runner's client), so the
bus journals and verifies them; the router journals a pushed request DELIVERED when
its answer arrives. A delivery the runner leaves unsettled (SendResponse failed, the
ack failed) is nacked back to the queue ``requeue_delay`` seconds after the runner asks
for the next request, which counts towards the queue's delivery limit: after it, the
request is dead-lettered (and journaled), never dropped.

Each transport delivery is held by its handler call until it is settled, so the
transport's prefetch bounds how many wait in :class:`PushSource`'s buffer.
"""

from __future__ import annotations

import asyncio
import uuid

import structlog
from lxml import etree

from gateway.core.clock import Clock, SystemClock
from gateway.core.envelope import MessageMetadata, ParticipantRef
from gateway.core.errors import SmevbusError
from gateway.crypto.certificates import common_name, describe
from gateway.crypto.envelope import verify_element
from gateway.crypto.xmldsig import XmlVerifier
from gateway.transport.base import (
    HEADER_REQUEST_ID,
    HEADER_SENDER,
    HEADER_TYPE,
    Delivery,
    Direction,
    Subscription,
    Transport,
)
from gateway.xml import messages as m
from gateway.xml.namespaces import SMEV_TYPES
from gateway.xml.parse import parse_secure
from gateway.xml.readers import read_send_request

log = structlog.get_logger(__name__)


class PushedRequest:
    """A request consumed from the queue; ``ack`` acks the transport delivery."""

    def __init__(self, delivery: m.RequestDelivery, held: Delivery) -> None:
        self._delivery = delivery
        self.held = held

    @property
    def delivery(self) -> m.RequestDelivery:
        return self._delivery

    @property
    def request_id(self) -> str | None:
        return self.held.message.headers.get(HEADER_REQUEST_ID)

    async def ack(self) -> None:
        await self.held.ack()


class Refused(Exception):
    """A delivery that can never be answered: dead-lettered with this reason."""


class PushSource:
    """Consumes ``requests.<participant>``; ``next`` takes from the prefetch buffer.

    ``wait``: how long ``next`` waits for a delivery before returning None.
    ``requeue_delay``: how long an unsettled delivery is kept before it is nacked back
    (like a pull's visibility timeout, so a failing bus is not hammered).
    """

    def __init__(
        self,
        transport: Transport,
        participant: str,
        verifier: XmlVerifier,
        *,
        clock: Clock | None = None,
        prefetch: int | None = None,
        wait: float = 1.0,
        requeue_delay: float = 1.0,
        max_bytes: int = 16 * 1024 * 1024,
    ) -> None:
        self.transport = transport
        self.participant = participant
        self.verifier = verifier
        self.clock = clock or SystemClock()
        self.prefetch = prefetch
        self.wait = wait
        self.requeue_delay = requeue_delay
        self.max_bytes = max_bytes
        self._buffer: asyncio.Queue[Delivery] = asyncio.Queue()
        self._subscription: Subscription | None = None
        self._starting = asyncio.Lock()
        self._in_hand: PushedRequest | None = None
        self._requeues: set[asyncio.Task[None]] = set()
        self._closing = False

    # --- the RequestSource side --------------------------------------------------------

    async def start(self) -> None:
        """Start consuming (``next`` does this on first use)."""
        async with self._starting:
            if self._subscription is None and not self._closing:
                self._subscription = await self.transport.consume(
                    Direction.REQUESTS, self.participant, self._hold, prefetch=self.prefetch
                )

    async def next(self) -> PushedRequest | None:
        if self._closing:
            return None
        await self.start()
        self._release_in_hand()
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self.wait
        while True:
            try:
                held = self._buffer.get_nowait()
            except asyncio.QueueEmpty:
                left = deadline - loop.time()
                if left <= 0:
                    return None
                try:
                    async with asyncio.timeout(left):
                        held = await self._buffer.get()
                except TimeoutError:
                    return None
            if held.settled:  # lapsed meanwhile (the handler was cancelled)
                continue
            inbound = await self._open(held)
            if inbound is not None:
                self._in_hand = inbound
                return inbound

    async def close(self) -> None:
        """Stop consuming; every delivery not yet acked goes back to the queue."""
        self._closing = True
        pending = [] if self._in_hand is None else [self._in_hand.held]
        self._in_hand = None
        while not self._buffer.empty():
            pending.append(self._buffer.get_nowait())
        for task in self._requeues:
            task.cancel()
        await asyncio.gather(*self._requeues, return_exceptions=True)
        for held in pending:
            await _requeue(held)
        if self._subscription is not None:
            await self._subscription.cancel()
            self._subscription = None

    # --- plumbing --------------------------------------------------------------------

    async def _hold(self, held: Delivery) -> None:
        """The transport handler: keep the delivery until the runner settles it."""
        if self._closing:
            return  # left unsettled: the transport gives it back
        settled = asyncio.Event()
        held.on_settle(settled.set)
        self._buffer.put_nowait(held)
        await settled.wait()

    def _release_in_hand(self) -> None:
        """The runner is done with the last request: if it left it unsettled, requeue it."""
        last, self._in_hand = self._in_hand, None
        if last is None or last.held.settled:
            return
        log.info("push_delivery_unsettled", message_id=last.held.message.message_id)
        task = asyncio.create_task(self._requeue_later(last.held))
        self._requeues.add(task)
        task.add_done_callback(self._requeues.discard)

    async def _requeue_later(self, held: Delivery) -> None:
        try:
            await asyncio.sleep(self.requeue_delay)
        finally:
            await _requeue(held)

    async def _open(self, held: Delivery) -> PushedRequest | None:
        """The delivery as a verified request, or None once it was dead-lettered."""
        message_id = held.message.message_id
        try:
            delivery = self._read(held)
        except Refused as exc:
            log.warning("push_delivery_refused", message_id=message_id, reason=str(exc))
            try:
                await held.reject(str(exc))
            except SmevbusError as error:
                log.warning("push_reject_failed", message_id=message_id, error=str(error))
            return None
        return PushedRequest(delivery, held)

    def _read(self, held: Delivery) -> m.RequestDelivery:
        message = held.message
        try:
            body = parse_secure(message.body, max_bytes=self.max_bytes)
            data = read_send_request(body)
        except SmevbusError as exc:
            raise Refused(f"not a SendRequestRequest the bus published: {exc.message}") from exc
        try:
            cert = verify_element(body, self.verifier)
        except SmevbusError as exc:
            raise Refused(f"the consumer's signature does not verify: {exc.message}") from exc
        signer, sender = common_name(cert), message.headers.get(HEADER_SENDER)
        if sender is None or signer != sender:
            raise Refused(f"signed by {describe(cert)}, not by the sender {sender!r}")
        holder = body.find(f"{{{SMEV_TYPES}}}CallerInformationSystemSignature")
        signature = None if holder is None or len(holder) == 0 else holder[0]
        if signature is None:
            raise Refused("the request carries no consumer signature")
        now = self.clock.now()
        try:
            metadata = MessageMetadata(
                message_id=uuid.UUID(message.message_id),
                message_type=message.headers.get(HEADER_TYPE)
                or (etree.QName(data.content).namespace or ""),
                sender=ParticipantRef(mnemonic=sender),
                recipient=ParticipantRef(mnemonic=self.participant),
                sending_timestamp=now,
                delivery_timestamp=now,
                status="DELIVERED",
            )
        except ValueError as exc:
            raise Refused(f"the delivery's metadata is unusable: {exc}") from exc
        return m.RequestDelivery(
            request_data=data.element,
            metadata=metadata,
            reply_to=message.message_id,
            sender_signature=signature,
        )


async def _requeue(held: Delivery) -> None:
    if held.settled:
        return
    try:
        await held.nack(requeue=True)
    except Exception as exc:  # the channel is gone: the broker requeues it anyway
        log.warning("push_requeue_failed", message_id=held.message.message_id, error=str(exc))
