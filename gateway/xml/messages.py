"""Plain values of the message-exchange Body elements, and builders for all of them.

``MessageMetadata`` and ``ParticipantRef`` are the core's pydantic models
(:mod:`gateway.core.envelope`); the rest hold lxml elements (signed parts must stay
the very elements that were verified) and so live here.

Builders return a fresh Body element (wrap it with :func:`gateway.xml.soap.wrap_envelope`);
elements passed in (business content, signed parts, ``ds:Signature``) are copied, so the
caller's trees are never modified. Readers live in :mod:`gateway.xml.readers`.

Timestamps must be timezone-aware; UUIDs are written in lowercase hex (SMEV 3 form).
"""

from __future__ import annotations

import functools
import re
import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from xml.sax.saxutils import escape

from lxml import etree

from gateway.core.envelope import MessageKind, MessageMetadata, ParticipantRef
from gateway.core.xml_text import FORBIDDEN_CLASS, escape_forbidden, forbidden_char
from gateway.xml.graft import Grafts, copy_tree, parse_joined, serialized
from gateway.xml.namespaces import SMEV_BASIC, SMEV_TYPES, qname
from gateway.xml.soap import SignatureContainer, attach_signature, first_child

CONSUMER_ID = "SIGNED_BY_CONSUMER"
PROVIDER_ID = "SIGNED_BY_PROVIDER"
CALLER_ID = "SIGNED_BY_CALLER"
SMEV_ID = "SIGNED_BY_SMEV"

_NSMAP = {"smev": SMEV_TYPES, "basic": SMEV_BASIC}


@dataclass(frozen=True, eq=False)
class RequestData:
    """Values of ``SenderProvidedRequestData``; ``element`` is that element (signature target)."""

    message_id: uuid.UUID
    content: etree._Element
    """The business element inside MessagePrimaryContent."""
    eol: datetime | None
    test: bool
    reference_message_id: uuid.UUID | None
    transaction_code: str | None
    element: etree._Element
    node_id: str | None = None


@dataclass(frozen=True)
class Rejection:
    code: str
    """RejectionReasonCode: ACCESS_DENIED, NO_DATA, ..., INVALID_REQUEST, AGENCY_UNAVAILABLE."""
    description: str


WIRE_REJECTION_CODES: dict[str, str] = {
    "INVALID_REQUEST": "UNKNOWN_REQUEST_DESCRIPTION",
    "AGENCY_UNAVAILABLE": "FAILURE",
}
"""The adapter codes 1.1 does not have -> the 1.1 code they travel as."""
_FINER_CODE = re.compile(r"^\[(" + "|".join(WIRE_REJECTION_CODES) + r")\] ")
MAX_REJECTION_DESCRIPTION = 4000


def rejection_on_wire(rejection: Rejection) -> tuple[str, str]:
    """(RejectionReasonCode, RejectionReasonDescription) as 1.1 allows them: an adapter
    code becomes its 1.1 code, named in brackets at the start of the description."""
    wire = WIRE_REJECTION_CODES.get(rejection.code)
    text = rejection.description if wire is None else f"[{rejection.code}] {rejection.description}"
    return wire or rejection.code, text[:MAX_REJECTION_DESCRIPTION]


def rejection_from_wire(code: str, description: str) -> Rejection:
    """The inverse of :func:`rejection_on_wire` (the finer code back when it is there)."""
    found = _FINER_CODE.match(description)
    if found is not None and WIRE_REJECTION_CODES[found.group(1)] == code:
        return Rejection(found.group(1), description[found.end() :])
    return Rejection(code, description)


MAX_STATUS_DETAILS = 500


@dataclass(frozen=True)
class AsyncStatus:
    """``AsyncProcessingStatus`` of an interim answer; ``category`` an InteractionStatusType.

    ``original_message_id``: the request answered (the builder takes ``To`` when None)."""

    category: str
    details: str | None = None
    original_message_id: uuid.UUID | None = None


@dataclass(frozen=True)
class RequestStatus:
    """``RequestStatus``: a provider's business status of a request (not final)."""

    code: int
    description: str
    parameters: tuple[tuple[str, str], ...] = ()


@dataclass(frozen=True, eq=False)
class ResponseData:
    """Values of ``SenderProvidedResponseData``: exactly one of the three answers is set."""

    message_id: uuid.UUID
    to: str
    content: etree._Element | None
    rejections: tuple[Rejection, ...]
    status: AsyncStatus | None
    element: etree._Element
    request_status: RequestStatus | None = None


@dataclass(frozen=True)
class TypeSelector:
    """``MessageTypeSelector`` of GetRequest/GetResponse."""

    timestamp: datetime
    namespace_uri: str | None = None
    root_element: str | None = None
    node_id: str | None = None


@dataclass(frozen=True)
class AckTarget:
    message_id: uuid.UUID
    accepted: bool = True


@dataclass(frozen=True, eq=False)
class RequestDelivery:
    """One request handed to a provider by GetRequest (``Request`` element)."""

    request_data: etree._Element
    """``SenderProvidedRequestData`` exactly as the consumer signed it."""
    metadata: MessageMetadata
    reply_to: str
    sender_signature: etree._Element
    """The consumer's ``ds:Signature`` over ``request_data``."""


@dataclass(frozen=True, eq=False)
class ResponseDelivery:
    """One response handed to a consumer by GetResponse (``Response`` element)."""

    original_message_id: uuid.UUID
    response_data: etree._Element
    """``SenderProvidedResponseData`` exactly as the provider signed it."""
    metadata: MessageMetadata
    sender_signature: etree._Element


@dataclass(frozen=True)
class StatusNotice:
    """``SmevAsyncProcessingMessage`` of GetStatus: a status of one of the caller's messages."""

    original_message_id: uuid.UUID
    category: str
    """An InteractionStatusType code."""
    details: str | None = None
    fault_code: str | None = None
    """``SmevFault/Code``: the stable code of a failure, when there was one."""
    fault_description: str | None = None


@dataclass(frozen=True)
class QueueStatistic:
    """One ``QueueStatistics`` of GetIncomingQueueStatistics."""

    queue_name: str
    pending: int


# ---------------------------------------------------------------- helpers


def _ts(value: datetime) -> str:
    if value.tzinfo is None or value.utcoffset() is None:
        raise ValueError(f"timestamp {value!r} has no time zone; bus timestamps must be aware")
    return value.isoformat()


def _sub(parent: etree._Element, ns: str, name: str, text: str | None = None) -> etree._Element:
    el = etree.SubElement(parent, f"{{{ns}}}{name}")  # qname() inline: the builders' hot path
    if text is not None:
        el.text = text
    return el


#: Body element name -> an empty one declaring ``_NSMAP``, copied for each message:
#: a copy costs a seventh of making the element with its namespaces. Names are the
#: builders' own (a dozen).
_ROOTS: dict[str, etree._Element] = {}


def _root(name: str) -> etree._Element:
    template = _ROOTS.get(name)
    if template is None:
        template = _ROOTS[name] = etree.Element(qname(SMEV_TYPES, name), nsmap=_NSMAP)
    return copy_tree(template)


def _sign(
    parent: etree._Element,
    signature: etree._Element | None,
    container: SignatureContainer = "CallerInformationSystemSignature",
) -> None:
    if signature is not None:
        attach_signature(parent, copy_tree(signature), container)


def _participant(who: ParticipantRef) -> str:
    # Required in 1.1: the mnemonic stands in for a participant registered without a name.
    return (
        f"<smev:Mnemonic>{_text(who.mnemonic)}</smev:Mnemonic>"
        f"<smev:HumanReadableName>{_text(who.name or who.mnemonic)}</smev:HumanReadableName>"
    )


#: What text written as markup must not hold as it is: markup, or what XML cannot carry.
_NOT_PLAIN = re.compile(f"[&<>{FORBIDDEN_CLASS}]")


def _text(value: str) -> str:
    """``value`` as the text of an element written as text; ``ValueError`` where XML
    cannot carry it, as lxml refuses such text in a tree."""
    if _NOT_PLAIN.search(value) is None:
        return value  # nearly always: one search
    char = forbidden_char(value)
    if char is not None:
        raise ValueError(f"{char} cannot be written in XML: {escape_forbidden(value)[:100]}")
    return escape(value)


INTERACTION_TYPE = "NotDetected"
"""``SupplementaryData/InteractionType``: the bus does not classify interactions."""
MESSAGE_TYPES: dict[MessageKind, str] = {
    MessageKind.REQUEST: "REQUEST",
    MessageKind.RESPONSE: "RESPONSE",
}
"""Message kind -> ``MessageMetadata/MessageType``."""


def destination_name(meta: MessageMetadata) -> str:
    """``DestinationName``: the queue the message went to (``requests.ZAGS``)."""
    if meta.destination is not None:
        return meta.destination
    if meta.recipient is None:
        return ""
    direction = "requests" if meta.kind is MessageKind.REQUEST else "responses"
    return f"{direction}.{meta.recipient.mnemonic}"


def _metadata(meta: MessageMetadata, id_: str | None = None) -> bytes:
    """``MessageMetadata`` as text, ``smev:`` bound where it goes, every optional child
    there only when it has a value: a third of the time of filling in a tree."""
    recipient, delivered, status = meta.recipient, meta.delivery_timestamp, meta.status
    return "".join(
        (
            "<smev:MessageMetadata>" if id_ is None else f'<smev:MessageMetadata Id="{id_}">',
            f"<smev:MessageId>{meta.message_id}</smev:MessageId>",
            f"<smev:MessageType>{MESSAGE_TYPES[meta.kind]}</smev:MessageType>",
            f"<smev:Sender>{_participant(meta.sender)}</smev:Sender>",
            f"<smev:SendingTimestamp>{_ts(meta.sending_timestamp)}</smev:SendingTimestamp>",
            f"<smev:DestinationName>{_text(destination_name(meta))}</smev:DestinationName>",
            _optional("Recipient", None if recipient is None else _participant(recipient)),
            "<smev:SupplementaryData><smev:DetectedContentTypeName>",
            _text(meta.message_type),
            "</smev:DetectedContentTypeName>",
            f"<smev:InteractionType>{INTERACTION_TYPE}</smev:InteractionType></smev:SupplementaryData>",
            _optional("DeliveryTimestamp", None if delivered is None else _ts(delivered)),
            _optional("Status", None if status is None else _text(status)),
            "</smev:MessageMetadata>",
        )
    ).encode()


def _optional(name: str, content: str | None) -> str:
    return "" if content is None else f"<smev:{name}>{content}</smev:{name}>"


def _written(name: str, *inner: bytes) -> etree._Element:
    """The Body element ``name``, declaring what :func:`_root` declares, around ``inner``
    (the builder's markup and :func:`~gateway.xml.graft.serialized` parts), parsed once."""
    opening, closing = _tags(name)
    return parse_joined(opening, *inner, closing)


@functools.cache
def _tags(name: str) -> tuple[bytes, bytes]:
    """The opening and closing tags of :func:`_written`'s ``name``: made once a name,
    not once a reply."""
    declarations = " ".join(f'xmlns:{prefix}="{uri}"' for prefix, uri in _NSMAP.items())
    return f"<smev:{name} {declarations}>".encode(), f"</smev:{name}>".encode()


def _timestamp(parent: etree._Element, when: datetime) -> None:
    _sub(parent, SMEV_BASIC, "Timestamp", _ts(when)).set("Id", CALLER_ID)


def _primary_content(parent: etree._Element, content: etree._Element, grafts: Grafts) -> None:
    grafts.slot(_sub(parent, SMEV_BASIC, "MessagePrimaryContent"), content)


def _sender_signature(signature: etree._Element) -> tuple[bytes, bytes, bytes]:
    """The sender's ``ds:Signature`` as it was, in ``SenderInformationSystemSignature``."""
    return (
        b"<smev:SenderInformationSystemSignature>",
        serialized(signature),
        b"</smev:SenderInformationSystemSignature>",
    )


def _sign_message(root: etree._Element, name: str, signature: etree._Element | None) -> None:
    """1.1 puts the bus's SMEVSignature inside ``RequestMessage``/``ResponseMessage``."""
    message = first_child(root, f"{{{SMEV_TYPES}}}{name}")
    if message is not None:
        _sign(message, signature, "SMEVSignature")


def _selector(
    name: str, selector: TypeSelector, signature: etree._Element | None
) -> etree._Element:
    root = _root(name)
    sel = _sub(root, SMEV_BASIC, "MessageTypeSelector")
    sel.set("Id", CALLER_ID)
    if selector.namespace_uri is not None:
        _sub(sel, SMEV_BASIC, "NamespaceURI", selector.namespace_uri)
    if selector.root_element is not None:
        _sub(sel, SMEV_BASIC, "RootElementLocalName", selector.root_element)
    _sub(sel, SMEV_BASIC, "Timestamp", _ts(selector.timestamp))
    if selector.node_id is not None:
        _sub(sel, SMEV_BASIC, "NodeID", selector.node_id)
    _sign(root, signature)
    return root


# ---------------------------------------------------------------- SendRequest


def build_send_request(
    message_id: uuid.UUID,
    content: etree._Element,
    *,
    eol: datetime | None = None,
    test: bool = False,
    reference_message_id: uuid.UUID | None = None,
    transaction_code: str | None = None,
    node_id: str | None = None,
    signature: etree._Element | None = None,
    data_id: str = CONSUMER_ID,
) -> etree._Element:
    """``SendRequestRequest``; sign its ``SenderProvidedRequestData`` (``Id=data_id``)."""
    root = _root("SendRequestRequest")
    data = _sub(root, SMEV_TYPES, "SenderProvidedRequestData")
    data.set("Id", data_id)
    _sub(data, SMEV_TYPES, "MessageID", str(message_id))
    if reference_message_id is not None:
        _sub(data, SMEV_TYPES, "ReferenceMessageID", str(reference_message_id))
    if transaction_code is not None:
        _sub(data, SMEV_TYPES, "TransactionCode", transaction_code)
    if node_id is not None:
        _sub(data, SMEV_TYPES, "NodeID", node_id)
    if eol is not None:
        _sub(data, SMEV_TYPES, "EOL", _ts(eol))
    grafts = Grafts()
    _primary_content(data, content, grafts)
    if test:
        _sub(data, SMEV_TYPES, "TestMessage")
    root = grafts.done(root)
    _sign(root, signature)
    return root


def build_send_request_response(
    metadata: MessageMetadata, *, signature: etree._Element | None = None
) -> etree._Element:
    """``SendRequestResponse``: the bus accepted the request (``MessageMetadata`` signed)."""
    root = _written("SendRequestResponse", _metadata(metadata, SMEV_ID))
    _sign(root, signature, "SMEVSignature")
    return root


# ---------------------------------------------------------------- GetRequest


def build_get_request(
    selector: TypeSelector, *, signature: etree._Element | None = None
) -> etree._Element:
    """``GetRequestRequest``: a provider pulls the next request from its queue."""
    return _selector("GetRequestRequest", selector, signature)


def build_get_request_response(
    delivery: RequestDelivery | None, *, signature: etree._Element | None = None
) -> etree._Element:
    """``GetRequestResponse``; ``None`` means the queue is empty (no RequestMessage).

    The bus signs ``RequestMessage`` (its ``Request``), its SMEVSignature inside it."""
    if delivery is None:
        return _root("GetRequestResponse")
    root = _written(
        "GetRequestResponse",
        f'<smev:RequestMessage><smev:Request Id="{SMEV_ID}">'.encode(),
        serialized(delivery.request_data),
        _metadata(delivery.metadata),
        f"<smev:ReplyTo>{_text(delivery.reply_to)}</smev:ReplyTo>".encode(),
        *_sender_signature(delivery.sender_signature),
        b"</smev:Request></smev:RequestMessage>",
    )
    _sign_message(root, "RequestMessage", signature)
    return root


# ---------------------------------------------------------------- SendResponse


def build_send_response(
    message_id: uuid.UUID,
    to: str,
    *,
    content: etree._Element | None = None,
    rejections: Sequence[Rejection] = (),
    status: AsyncStatus | None = None,
    request_status: RequestStatus | None = None,
    signature: etree._Element | None = None,
    data_id: str = PROVIDER_ID,
) -> etree._Element:
    """``SendResponseRequest`` with exactly one of ``content``, ``rejections``,
    ``request_status``, ``status``.

    ``to`` is the ``ReplyTo`` of the request being answered (the request's MessageID).
    """
    given = (
        (content is not None)
        + bool(rejections)
        + (status is not None)
        + (request_status is not None)
    )
    if given != 1:
        raise ValueError("give exactly one of content, rejections, request_status or status")
    root = _root("SendResponseRequest")
    data = _sub(root, SMEV_TYPES, "SenderProvidedResponseData")
    data.set("Id", data_id)
    _sub(data, SMEV_TYPES, "MessageID", str(message_id))
    _sub(data, SMEV_TYPES, "To", to)
    grafts = Grafts()
    if content is not None:
        _primary_content(data, content, grafts)
    for rejection in rejections:
        code, description = rejection_on_wire(rejection)
        rej = _sub(data, SMEV_TYPES, "RequestRejected")
        _sub(rej, SMEV_TYPES, "RejectionReasonCode", code)
        _sub(rej, SMEV_TYPES, "RejectionReasonDescription", description)
    if request_status is not None:
        rs = _sub(data, SMEV_TYPES, "RequestStatus")
        _sub(rs, SMEV_TYPES, "StatusCode", str(request_status.code))
        for key, value in request_status.parameters:
            param = _sub(rs, SMEV_TYPES, "StatusParameter")
            _sub(param, SMEV_TYPES, "Key", key)
            _sub(param, SMEV_TYPES, "Value", value)
        _sub(rs, SMEV_TYPES, "StatusDescription", request_status.description)
    if status is not None:
        st = _sub(data, SMEV_TYPES, "AsyncProcessingStatus")
        _sub(st, SMEV_TYPES, "OriginalMessageId", str(status.original_message_id or to))
        _sub(st, SMEV_TYPES, "StatusCategory", status.category)
        if status.details is not None:
            _sub(st, SMEV_TYPES, "StatusDetails", status.details[:MAX_STATUS_DETAILS])
    root = grafts.done(root)
    _sign(root, signature)
    return root


def build_send_response_response(
    metadata: MessageMetadata, *, signature: etree._Element | None = None
) -> etree._Element:
    """``SendResponseResponse``: the bus accepted the response."""
    root = _written("SendResponseResponse", _metadata(metadata, SMEV_ID))
    _sign(root, signature, "SMEVSignature")
    return root


# ---------------------------------------------------------------- GetResponse


def build_get_response(
    selector: TypeSelector, *, signature: etree._Element | None = None
) -> etree._Element:
    """``GetResponseRequest``: a consumer pulls the next response from its queue."""
    return _selector("GetResponseRequest", selector, signature)


def build_get_response_response(
    delivery: ResponseDelivery | None, *, signature: etree._Element | None = None
) -> etree._Element:
    """``GetResponseResponse``; ``None`` means the queue is empty (no ResponseMessage)."""
    if delivery is None:
        return _root("GetResponseResponse")
    root = _written(
        "GetResponseResponse",
        f'<smev:ResponseMessage><smev:Response Id="{SMEV_ID}">'.encode(),
        f"<smev:OriginalMessageId>{delivery.original_message_id}</smev:OriginalMessageId>".encode(),
        serialized(delivery.response_data),
        _metadata(delivery.metadata),
        *_sender_signature(delivery.sender_signature),
        b"</smev:Response></smev:ResponseMessage>",
    )
    _sign_message(root, "ResponseMessage", signature)
    return root


# ---------------------------------------------------------------- Ack


def build_ack(
    message_id: uuid.UUID, *, accepted: bool = True, signature: etree._Element | None = None
) -> etree._Element:
    """``AckRequest``; ``accepted=False``: the bus's signature on the message did not verify."""
    root = _root("AckRequest")
    target = _sub(root, SMEV_BASIC, "AckTargetMessage", str(message_id))
    target.set("Id", CALLER_ID)
    target.set("accepted", "true" if accepted else "false")
    _sign(root, signature)
    return root


def build_ack_response() -> etree._Element:
    """``AckResponse`` (empty)."""
    return _root("AckResponse")


# ---------------------------------------------------------------- GetStatus


def build_get_status(
    timestamp: datetime, *, signature: etree._Element | None = None
) -> etree._Element:
    """``GetStatusRequest``: take the next status notice about the caller's messages."""
    root = _root("GetStatusRequest")
    _timestamp(root, timestamp)
    _sign(root, signature)
    return root


def build_get_status_response(
    notice: StatusNotice | None, *, signature: etree._Element | None = None
) -> etree._Element:
    """``GetStatusResponse``; ``None``: no notice is waiting. The bus signs
    ``AsyncProcessingStatusData``, its SMEVSignature inside ``SmevAsyncProcessingMessage``."""
    root = _root("GetStatusResponse")
    if notice is not None:
        message = _sub(root, SMEV_TYPES, "SmevAsyncProcessingMessage")
        data = _sub(message, SMEV_TYPES, "AsyncProcessingStatusData")
        data.set("Id", SMEV_ID)
        st = _sub(data, SMEV_TYPES, "AsyncProcessingStatus")
        _sub(st, SMEV_TYPES, "OriginalMessageId", str(notice.original_message_id))
        _sub(st, SMEV_TYPES, "StatusCategory", notice.category)
        if notice.details is not None:
            _sub(st, SMEV_TYPES, "StatusDetails", notice.details[:MAX_STATUS_DETAILS])
        if notice.fault_code is not None:
            fault = _sub(st, SMEV_TYPES, "SmevFault")
            _sub(fault, SMEV_BASIC, "Code", notice.fault_code[:50])
            if notice.fault_description is not None:
                _sub(fault, SMEV_BASIC, "Description", notice.fault_description)
        _sign(message, signature, "SMEVSignature")
    return root


# ---------------------------------------------------------------- GetIncomingQueueStatistics


def build_get_incoming_queue_statistics(
    timestamp: datetime,
    *,
    node_id: str | None = None,
    signature: etree._Element | None = None,
) -> etree._Element:
    """``GetIncomingQueueStatisticsRequest``: how many messages wait for the caller."""
    root = _root("GetIncomingQueueStatisticsRequest")
    if node_id is not None:
        _sub(root, SMEV_TYPES, "NodeID", node_id)
    _timestamp(root, timestamp)
    _sign(root, signature)
    return root


def build_get_incoming_queue_statistics_response(
    statistics: Sequence[QueueStatistic],
) -> etree._Element:
    """``GetIncomingQueueStatisticsResponse``: one ``QueueStatistics`` per queue."""
    root = _root("GetIncomingQueueStatisticsResponse")
    for stat in statistics:
        el = _sub(root, SMEV_TYPES, "QueueStatistics")
        el.set("queueName", stat.queue_name)
        el.set("pendingMessageNumber", str(stat.pending))
    return root
