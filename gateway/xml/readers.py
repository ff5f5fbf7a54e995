"""Read plain values out of message-exchange Body elements.

Readers check the structure they rely on and raise
:class:`~gateway.core.errors.InvalidContent` (naming the element and what is missing)
instead of ``AttributeError``; they do not replace XSD validation
(:func:`gateway.xml.schema.validate_bus_element`), which should run first.
Returned elements (``content``, ``element``, signatures) are the live nodes of the tree
that was read, not copies.
"""

from __future__ import annotations

import uuid
from datetime import datetime

from lxml import etree

from gateway.core.envelope import MessageKind, MessageMetadata, ParticipantRef
from gateway.core.errors import InvalidContent
from gateway.xml.messages import (
    AckTarget,
    AsyncStatus,
    QueueStatistic,
    RequestData,
    RequestDelivery,
    RequestStatus,
    ResponseData,
    ResponseDelivery,
    StatusNotice,
    TypeSelector,
    rejection_from_wire,
)
from gateway.xml.namespaces import DS, SMEV_BASIC, SMEV_TYPES, qname
from gateway.xml.soap import find_signature, first_child
from gateway.xml.text import text_of

T, B = SMEV_TYPES, SMEV_BASIC
# Optional children of the senders' data, looked up among the direct children (first_child,
# iterchildren), not with find()'s ElementPath.
_TEST_MESSAGE = f"{{{T}}}TestMessage"
_PRIMARY_CONTENT = f"{{{B}}}MessagePrimaryContent"
_REQUEST_REJECTED = f"{{{T}}}RequestRejected"
_ASYNC_STATUS = f"{{{T}}}AsyncProcessingStatus"
_REQUEST_STATUS = f"{{{T}}}RequestStatus"


def _name(el: etree._Element) -> str:
    return etree.QName(el).localname


def _expect(el: etree._Element, ns: str, name: str) -> None:
    if el.tag != f"{{{ns}}}{name}":  # qname() written out here and below: ~20 a round trip
        raise InvalidContent(
            f"expected <{name}> in {ns}, got <{etree.QName(el).text}>", reason="structure"
        )


def _child(el: etree._Element, ns: str, name: str) -> etree._Element:
    found = first_child(el, f"{{{ns}}}{name}")
    if found is None:
        raise InvalidContent(f"<{_name(el)}> has no <{name}>", reason="structure")
    return found


def _text(el: etree._Element, ns: str, name: str) -> str:
    text = text_of(_child(el, ns, name)).strip()
    if not text:
        raise InvalidContent(f"<{_name(el)}/{name}> is empty", reason="structure")
    return text


def _opt_text(el: etree._Element, ns: str, name: str) -> str | None:
    found = first_child(el, f"{{{ns}}}{name}")
    text = None if found is None else text_of(found)
    return text.strip() if text else None


def _uuid(value: str, where: str) -> uuid.UUID:
    try:
        return uuid.UUID(value)
    except ValueError:
        raise InvalidContent(f"<{where}> is not a UUID: {value!r}", reason="structure") from None


def _datetime(value: str, where: str) -> datetime:
    try:
        parsed = datetime.fromisoformat(value)
    except ValueError:
        raise InvalidContent(
            f"<{where}> is not an xs:dateTime: {value!r}", reason="structure"
        ) from None
    if parsed.tzinfo is None:
        raise InvalidContent(
            f"<{where}> {value!r} has no time zone; write it with an offset, "
            "e.g. 2025-01-31T12:00:00+03:00",
            reason="structure",
        )
    return parsed


def _opt_datetime(el: etree._Element, ns: str, name: str) -> datetime | None:
    value = _opt_text(el, ns, name)
    return None if value is None else _datetime(value, name)


def _single_content(holder: etree._Element) -> etree._Element:
    elements = [c for c in holder if isinstance(c.tag, str)]
    if len(elements) != 1:
        raise InvalidContent(
            f"MessagePrimaryContent must hold exactly one element, found {len(elements)}",
            reason="structure",
        )
    return elements[0]


def _participant(el: etree._Element) -> ParticipantRef:
    return ParticipantRef(
        mnemonic=_text(el, T, "Mnemonic"), name=_opt_text(el, T, "HumanReadableName")
    )


_KINDS = {"REQUEST": MessageKind.REQUEST, "BROADCAST": MessageKind.REQUEST}


def read_metadata(el: etree._Element, *, content_type: str | None = None) -> MessageMetadata:
    """``MessageMetadata`` -> values.

    ``message_type`` is ``content_type`` (the namespace of the delivered content's root)
    when given, else ``SupplementaryData/DetectedContentTypeName``."""
    recipient = el.find(qname(T, "Recipient"))
    message_id = _opt_text(el, T, "MessageId")
    if message_id is None:
        raise InvalidContent("<MessageMetadata> has no <MessageId>", reason="structure")
    supplementary = el.find(qname(T, "SupplementaryData"))
    detected = (
        None if supplementary is None else _opt_text(supplementary, T, "DetectedContentTypeName")
    )
    message_type = content_type or detected
    if not message_type:
        raise InvalidContent(
            "<MessageMetadata> names no content type (SupplementaryData/DetectedContentTypeName)",
            reason="structure",
        )
    return MessageMetadata(
        message_id=_uuid(message_id, "MessageId"),
        message_type=message_type,
        kind=_KINDS.get(_text(el, T, "MessageType"), MessageKind.RESPONSE),
        sender=_participant(_child(el, T, "Sender")),
        sending_timestamp=_datetime(_text(el, T, "SendingTimestamp"), "SendingTimestamp"),
        recipient=None if recipient is None else _participant(recipient),
        destination=_opt_text(el, T, "DestinationName"),
        delivery_timestamp=_opt_datetime(el, T, "DeliveryTimestamp"),
        status=_opt_text(el, T, "Status"),
    )


def read_request_data(el: etree._Element) -> RequestData:
    """``SenderProvidedRequestData`` -> values (``content`` is the business element)."""
    _expect(el, T, "SenderProvidedRequestData")
    reference = _opt_text(el, T, "ReferenceMessageID")
    return RequestData(
        message_id=_uuid(_text(el, T, "MessageID"), "MessageID"),
        content=_single_content(_child(el, B, "MessagePrimaryContent")),
        eol=_opt_datetime(el, T, "EOL"),
        test=first_child(el, _TEST_MESSAGE) is not None,
        reference_message_id=None if reference is None else _uuid(reference, "ReferenceMessageID"),
        transaction_code=_opt_text(el, T, "TransactionCode"),
        element=el,
        node_id=_opt_text(el, T, "NodeID"),
    )


def read_response_data(el: etree._Element) -> ResponseData:
    """``SenderProvidedResponseData`` -> values (exactly one answer kind is set)."""
    _expect(el, T, "SenderProvidedResponseData")
    holder = first_child(el, _PRIMARY_CONTENT)
    rejections = tuple(
        [
            rejection_from_wire(
                _text(r, T, "RejectionReasonCode"), _text(r, T, "RejectionReasonDescription")
            )
            for r in el.iterchildren(_REQUEST_REJECTED)
        ]
    )
    status_el = first_child(el, _ASYNC_STATUS)
    status = None if status_el is None else _async_status(status_el)
    request_status_el = first_child(el, _REQUEST_STATUS)
    request_status = None if request_status_el is None else _request_status(request_status_el)
    kinds = (
        (holder is not None)
        + bool(rejections)
        + (status is not None)
        + (request_status is not None)
    )
    if kinds != 1:
        raise InvalidContent(
            "SenderProvidedResponseData must hold exactly one of MessagePrimaryContent, "
            f"RequestRejected, RequestStatus or AsyncProcessingStatus; found {kinds}",
            reason="structure",
        )
    return ResponseData(
        message_id=_uuid(_text(el, T, "MessageID"), "MessageID"),
        to=_text(el, T, "To"),
        content=None if holder is None else _single_content(holder),
        rejections=rejections,
        status=status,
        element=el,
        request_status=request_status,
    )


def _async_status(el: etree._Element) -> AsyncStatus:
    original = _opt_text(el, T, "OriginalMessageId")
    return AsyncStatus(
        _text(el, T, "StatusCategory"),
        _opt_text(el, T, "StatusDetails"),
        None if original is None else _uuid(original, "OriginalMessageId"),
    )


def _request_status(el: etree._Element) -> RequestStatus:
    raw = _text(el, T, "StatusCode")
    try:
        code = int(raw)
    except ValueError:
        raise InvalidContent(
            f"<StatusCode> is not an integer: {raw!r}", reason="structure"
        ) from None
    return RequestStatus(
        code=code,
        description=text_of(_child(el, T, "StatusDescription")),
        parameters=tuple(
            (text_of(_child(p, T, "Key")), text_of(_child(p, T, "Value")))
            for p in el.iterfind(qname(T, "StatusParameter"))
        ),
    )


def read_send_request(el: etree._Element) -> RequestData:
    """``SendRequestRequest`` -> its request data."""
    _expect(el, T, "SendRequestRequest")
    return read_request_data(_child(el, T, "SenderProvidedRequestData"))


def read_send_response(el: etree._Element) -> ResponseData:
    """``SendResponseRequest`` -> its response data."""
    _expect(el, T, "SendResponseRequest")
    return read_response_data(_child(el, T, "SenderProvidedResponseData"))


def read_send_result(el: etree._Element) -> MessageMetadata:
    """``SendRequestResponse`` or ``SendResponseResponse`` -> the metadata the bus assigned."""
    if el.tag not in (qname(T, "SendRequestResponse"), qname(T, "SendResponseResponse")):
        _expect(el, T, "SendRequestResponse")
    return read_metadata(_child(el, T, "MessageMetadata"))


def read_selector(el: etree._Element) -> TypeSelector:
    """``GetRequestRequest``/``GetResponseRequest`` (or the selector itself) -> values."""
    sel = el if el.tag == qname(B, "MessageTypeSelector") else _child(el, B, "MessageTypeSelector")
    return TypeSelector(
        timestamp=_datetime(_text(sel, B, "Timestamp"), "Timestamp"),
        namespace_uri=_opt_text(sel, B, "NamespaceURI"),
        root_element=_opt_text(sel, B, "RootElementLocalName"),
        node_id=_opt_text(sel, B, "NodeID"),
    )


def _signature_in(el: etree._Element, container: str) -> etree._Element:
    holder = _child(el, T, container)
    signature = holder.find(qname(DS, "Signature"))
    if signature is None:
        raise InvalidContent(f"<{container}> holds no ds:Signature", reason="structure")
    return signature


def read_get_request_response(el: etree._Element) -> RequestDelivery | None:
    """``GetRequestResponse`` -> the delivered request, or None if the queue was empty."""
    _expect(el, T, "GetRequestResponse")
    message = el.find(qname(T, "RequestMessage"))
    if message is None:
        return None
    request = _child(message, T, "Request")
    request_data = _child(request, T, "SenderProvidedRequestData")
    return RequestDelivery(
        request_data=request_data,
        metadata=read_metadata(
            _child(request, T, "MessageMetadata"), content_type=_content_type(request_data)
        ),
        reply_to=_text(request, T, "ReplyTo"),
        sender_signature=_signature_in(request, "SenderInformationSystemSignature"),
    )


def read_get_response_response(el: etree._Element) -> ResponseDelivery | None:
    """``GetResponseResponse`` -> the delivered response, or None if the queue was empty."""
    _expect(el, T, "GetResponseResponse")
    message = el.find(qname(T, "ResponseMessage"))
    if message is None:
        return None
    response = _child(message, T, "Response")
    response_data = _child(response, T, "SenderProvidedResponseData")
    return ResponseDelivery(
        original_message_id=_uuid(_text(response, T, "OriginalMessageId"), "OriginalMessageId"),
        response_data=response_data,
        metadata=read_metadata(
            _child(response, T, "MessageMetadata"), content_type=_content_type(response_data)
        ),
        sender_signature=_signature_in(response, "SenderInformationSystemSignature"),
    )


def _content_type(data: etree._Element) -> str | None:
    """The namespace of the business element in ``data``, if it holds one."""
    holder = data.find(qname(B, "MessagePrimaryContent"))
    if holder is None:
        return None
    return etree.QName(_single_content(holder)).namespace


def read_ack(el: etree._Element) -> AckTarget:
    """``AckRequest`` -> the acknowledged message id and the accepted flag."""
    _expect(el, T, "AckRequest")
    target = _child(el, B, "AckTargetMessage")
    raw = (target.get("accepted") or "true").strip()
    if raw not in ("true", "false", "1", "0"):
        raise InvalidContent(f"AckTargetMessage/@accepted is not a boolean: {raw!r}")
    return AckTarget(
        message_id=_uuid(text_of(target).strip(), "AckTargetMessage"),
        accepted=raw in ("true", "1"),
    )


def read_get_status(el: etree._Element) -> datetime:
    """``GetStatusRequest`` -> its signed ``Timestamp``."""
    _expect(el, T, "GetStatusRequest")
    return _datetime(_text(el, B, "Timestamp"), "Timestamp")


def read_get_status_response(el: etree._Element) -> StatusNotice | None:
    """``GetStatusResponse`` -> the status notice, or None if none was waiting."""
    _expect(el, T, "GetStatusResponse")
    message = el.find(qname(T, "SmevAsyncProcessingMessage"))
    if message is None:
        return None
    status = _child(_child(message, T, "AsyncProcessingStatusData"), T, "AsyncProcessingStatus")
    fault = status.find(qname(T, "SmevFault"))
    return StatusNotice(
        original_message_id=_uuid(_text(status, T, "OriginalMessageId"), "OriginalMessageId"),
        category=_text(status, T, "StatusCategory"),
        details=_opt_text(status, T, "StatusDetails"),
        fault_code=None if fault is None else _opt_text(fault, B, "Code"),
        fault_description=None if fault is None else _opt_text(fault, B, "Description"),
    )


def read_get_incoming_queue_statistics(el: etree._Element) -> tuple[datetime, str | None]:
    """``GetIncomingQueueStatisticsRequest`` -> (signed ``Timestamp``, ``NodeID``)."""
    _expect(el, T, "GetIncomingQueueStatisticsRequest")
    return _datetime(_text(el, B, "Timestamp"), "Timestamp"), _opt_text(el, T, "NodeID")


def read_get_incoming_queue_statistics_response(
    el: etree._Element,
) -> tuple[QueueStatistic, ...]:
    """``GetIncomingQueueStatisticsResponse`` -> one statistic per queue."""
    _expect(el, T, "GetIncomingQueueStatisticsResponse")
    stats = []
    for q in el.iterfind(qname(T, "QueueStatistics")):
        raw = q.get("pendingMessageNumber") or "0"
        if not raw.strip().isdigit():
            raise InvalidContent(
                f"pendingMessageNumber is not a count: {raw!r}", reason="structure"
            )
        stats.append(QueueStatistic(q.get("queueName") or "", int(raw)))
    return tuple(stats)


def read_caller_signature(el: etree._Element) -> etree._Element | None:
    """The caller's ``ds:Signature`` of a request Body element, or None if unsigned."""
    return find_signature(el, "CallerInformationSystemSignature")
