"""A participant's side of the six SOAP operations: build, sign, send, check the reply.

The transport is a single coroutine ``call(soap_bytes) -> (status, soap_bytes)``: the
router's ``handle`` in-process (the demo, tests), or an HTTP POST to ``/ws``. Every
reply is checked before it is believed: the bus's signature (and, for a delivered
message, its author's signature) must verify, and the bus signature must come from
the bus's registered certificate. A SOAP Fault is raised as the typed error its code
names, so callers handle ``AccessDenied`` and friends exactly as the bus does.
"""

from __future__ import annotations

import uuid
from collections.abc import Awaitable, Callable, Sequence
from datetime import datetime, timedelta

from lxml import etree

from gateway.core.clock import Clock, MessageIdSource
from gateway.core.envelope import MessageMetadata
from gateway.core.errors import InternalError, SignatureInvalid, error_class
from gateway.crypto.certificates import common_name, describe
from gateway.crypto.envelope import sign_element, verify_element
from gateway.crypto.xmldsig import XmlSigner, XmlVerifier
from gateway.xml import messages as m
from gateway.xml import readers
from gateway.xml.namespaces import SMEV_TYPES
from gateway.xml.parse import parse_secure
from gateway.xml.schema import Kind, type_catalog
from gateway.xml.soap import SignatureContainer, parse_fault, unwrap_envelope, wrap_envelope

Call = Callable[[bytes], Awaitable[tuple[int, bytes]]]


class ParticipantClient:
    def __init__(
        self,
        *,
        signer: XmlSigner,
        verifier: XmlVerifier,
        clock: Clock,
        call: Call,
        bus_mnemonic: str = "SMEVBUS",
        ids: MessageIdSource | None = None,
    ) -> None:
        self.signer = signer
        self.verifier = verifier
        self.clock = clock
        self.ids = ids or MessageIdSource(clock)
        self._call = call
        self._bus = bus_mnemonic
        self._last_poll: datetime | None = None

    # --- consumer -------------------------------------------------------------------

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
        """:meth:`send_request` in two steps: the envelope built and signed now, sent
        when the returned function is awaited."""
        raw = self._signed(
            m.build_send_request(message_id or self.ids.new(), content, eol=eol, test=test)
        )

        async def send() -> MessageMetadata:
            reply = await self._exchange_signed(raw)
            self._check_bus_signature(reply)
            return readers.read_send_result(reply)

        return send

    async def get_response(self, namespace: str | None = None) -> m.ResponseDelivery | None:
        reply = await self._exchange(m.build_get_response(self._selector(namespace, "response")))
        delivery = readers.read_get_response_response(reply)
        if delivery is not None:
            self._check_bus_signature(_holder(reply, "ResponseMessage"))
            self._check_author(reply, "ResponseMessage")
        return delivery

    async def get_status(self) -> m.StatusNotice | None:
        """The next status notice about the messages this participant sent, or None."""
        reply = await self._exchange(m.build_get_status(self._poll_time()))
        notice = readers.read_get_status_response(reply)
        if notice is not None:
            self._check_bus_signature(_holder(reply, "SmevAsyncProcessingMessage"))
        return notice

    async def get_incoming_queue_statistics(self) -> tuple[m.QueueStatistic, ...]:
        """How many messages wait in this participant's request and response queues."""
        body = m.build_get_incoming_queue_statistics(self.clock.now())
        return readers.read_get_incoming_queue_statistics_response(await self._exchange(body))

    # --- provider -------------------------------------------------------------------

    async def get_request(self, namespace: str | None = None) -> m.RequestDelivery | None:
        reply = await self._exchange(m.build_get_request(self._selector(namespace, "request")))
        delivery = readers.read_get_request_response(reply)
        if delivery is not None:
            self._check_bus_signature(_holder(reply, "RequestMessage"))
            self._check_author(reply, "RequestMessage")
        return delivery

    async def send_response(
        self,
        to: str,
        *,
        content: etree._Element | None = None,
        rejections: Sequence[m.Rejection] = (),
        status: m.AsyncStatus | None = None,
        message_id: uuid.UUID | None = None,
    ) -> MessageMetadata:
        body = m.build_send_response(
            message_id or self.ids.new(), to, content=content, rejections=rejections, status=status
        )
        reply = await self._exchange(body)
        self._check_bus_signature(reply)
        return readers.read_send_result(reply)

    # --- both -----------------------------------------------------------------------

    async def ack(self, message_id: uuid.UUID, *, accepted: bool = True) -> None:
        await self._exchange(m.build_ack(message_id, accepted=accepted))

    # --- plumbing -------------------------------------------------------------------

    def _selector(self, namespace: str | None, kind: Kind) -> m.TypeSelector:
        """1.1 names a message type by namespace *and* root element: the root is the
        type's request or response root in the catalogue (xsd/types)."""
        root = None
        if namespace is not None:
            mt = type_catalog().get(namespace)
            root = mt.request_root if kind == "request" else mt.response_root
        return m.TypeSelector(
            timestamp=self._poll_time(), namespace_uri=namespace, root_element=root
        )

    def _poll_time(self) -> datetime:
        # The bus serves a signed pull once: no two of ours share a Timestamp, even
        # when the clock has not moved since the last one.
        now = self.clock.now()
        if self._last_poll is not None and now <= self._last_poll:
            now = self._last_poll + timedelta(microseconds=1)
        self._last_poll = now
        return now

    async def _exchange(self, body: etree._Element) -> etree._Element:
        """Sign ``body``, send it, and return the reply's Body element (or raise its fault)."""
        return await self._exchange_signed(self._signed(body))

    def _signed(self, body: etree._Element) -> bytes:
        """``body`` signed, in its SOAP envelope."""
        sign_element(body, self.signer)
        return wrap_envelope(body)

    async def _exchange_signed(self, envelope: bytes) -> etree._Element:
        """Send a signed ``envelope``; the reply's Body element (or raise its fault)."""
        _status, raw = await self._call(envelope)
        root = parse_secure(raw, max_bytes=16 * 1024 * 1024)
        fault = parse_fault(root)
        if fault is not None:
            error = error_class(fault.code or "") or InternalError
            raise error(fault.description or fault.faultstring)
        return unwrap_envelope(root)[1]

    def _check_bus_signature(
        self, reply: etree._Element, container: SignatureContainer = "SMEVSignature"
    ) -> None:
        cert = verify_element(reply, self.verifier, container)
        if common_name(cert) != self._bus:
            raise SignatureInvalid(
                f"reply is signed by {describe(cert)}, not by the bus {self._bus}",
                reason="not_the_bus",
            )

    def _check_author(self, reply: etree._Element, holder: str) -> None:
        """Check the author's signature inside a delivered Request/Response."""
        message = reply.find(f"{{{SMEV_TYPES}}}{holder}")
        inner = None if message is None else message[0]
        if inner is None:
            raise SignatureInvalid("delivered message has no signed part")
        verify_element(inner, self.verifier, "SenderInformationSystemSignature")


def _holder(reply: etree._Element, name: str) -> etree._Element:
    """The element of ``reply`` that holds the bus's signature (1.1: inside the message)."""
    found = reply.find(f"{{{SMEV_TYPES}}}{name}")
    if found is None:
        raise SignatureInvalid(f"reply has no <{name}> to check the bus signature on")
    return found
