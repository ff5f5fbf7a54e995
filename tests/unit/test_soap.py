"""SOAP envelopes of the six operations: build -> validate -> wrap -> parse -> unwrap -> read."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path

import pytest
from lxml import etree

from gateway.core.envelope import MessageKind, MessageMetadata, ParticipantRef
from gateway.core.errors import InvalidContent, SchemaViolation, SenderNotRegistered
from gateway.core.smev_faults import Operation
from gateway.xml import messages as m
from gateway.xml import readers as r
from gateway.xml.namespaces import (
    DS,
    FNS_INN,
    MVD_PASSPORT_VALIDITY,
    SMEV_FAULTS,
    SMEV_TYPES,
    SOAP_ENV,
)
from gateway.xml.parse import parse_secure
from gateway.xml.schema import validate_bus_element, validate_content
from gateway.xml.smev_faults import smev_fault
from gateway.xml.soap import (
    OPERATIONS,
    attach_signature,
    find_signature,
    parse_fault,
    signature_target,
    soap_action,
    unwrap_envelope,
    wrap_envelope,
)

DATA = Path(__file__).resolve().parents[1] / "data"
MSK = timezone(timedelta(hours=3))
NOW = datetime(2025, 11, 26, 10, 30, 0, 123000, tzinfo=MSK)
MSG_ID = uuid.UUID("5b4e2a10-ca6c-11f0-8de9-0242ac120002")
RESP_ID = uuid.UUID("9e0c7c2e-ca6c-11f0-a1b2-0242ac120002")


def content(name: str) -> etree._Element:
    return parse_secure((DATA / "content" / name).read_bytes())


def fake_signature(reference: str = "#SIGNED_BY_CONSUMER") -> etree._Element:
    sig = etree.Element(f"{{{DS}}}Signature", nsmap={"ds": DS})
    info = etree.SubElement(sig, f"{{{DS}}}SignedInfo")
    etree.SubElement(info, f"{{{DS}}}Reference", URI=reference)
    etree.SubElement(sig, f"{{{DS}}}SignatureValue").text = "AAAA"
    return sig


def metadata(**overrides: object) -> MessageMetadata:
    values: dict[str, object] = {
        "message_id": MSG_ID,
        "message_type": MVD_PASSPORT_VALIDITY,
        "sender": ParticipantRef(
            mnemonic="PORTAL71", name="Региональный портал госуслуг Тульской области"
        ),
        "sending_timestamp": NOW,
        "recipient": ParticipantRef(mnemonic="MVD_MIGR", name="МВД России"),
        "destination": "requests.MVD_MIGR",
        "delivery_timestamp": NOW + timedelta(seconds=2),
        "status": "requestIsQueued",
    }
    values.update(overrides)
    return MessageMetadata.model_validate(values)


def round_trip(element: etree._Element, operation: str) -> etree._Element:
    """Validate, wrap, parse back hardened, unwrap; return the received Body child."""
    validate_bus_element(element)
    wire = wrap_envelope(element)
    assert wire.startswith(b"<?xml version='1.0' encoding='UTF-8'?>")
    op, body_child = unwrap_envelope(parse_secure(wire))
    assert op == operation
    validate_bus_element(body_child)
    return body_child


# ---------------------------------------------------------------- SendRequest


def test_send_request_round_trip() -> None:
    business = content("mvd-passport-validity.request.xml")
    el = m.build_send_request(
        MSG_ID,
        business,
        eol=NOW + timedelta(days=1),
        test=True,
        reference_message_id=RESP_ID,
        transaction_code="PORTAL71-2025-000417",
    )
    assert business.getparent() is None, "the caller's content is copied, not moved"
    got = r.read_send_request(round_trip(el, "SendRequest"))
    assert got.message_id == MSG_ID
    assert got.eol == NOW + timedelta(days=1)
    assert got.test is True
    assert got.reference_message_id == RESP_ID
    assert got.transaction_code == "PORTAL71-2025-000417"
    assert got.element.get("Id") == m.CONSUMER_ID
    assert etree.QName(got.content).namespace == MVD_PASSPORT_VALIDITY
    validate_content(got.content, expect="request")
    assert (
        got.content.findtext(
            f"{{{MVD_PASSPORT_VALIDITY}}}Passport/{{{MVD_PASSPORT_VALIDITY}}}Number"
        )
        == "482913"
    )
    assert r.read_caller_signature(got.element.getparent()) is None  # type: ignore[arg-type]


def test_send_request_minimal_and_signed() -> None:
    el = m.build_send_request(MSG_ID, content("fns-inn.request.xml"), signature=fake_signature())
    received = round_trip(el, "SendRequest")
    got = r.read_send_request(received)
    assert (got.eol, got.test, got.reference_message_id, got.transaction_code) == (
        None,
        False,
        None,
        None,
    )
    sig = r.read_caller_signature(received)
    assert sig is not None
    assert sig.find(f"{{{DS}}}SignedInfo/{{{DS}}}Reference").get("URI") == "#SIGNED_BY_CONSUMER"  # type: ignore[union-attr]
    assert signature_target(received) is got.element


def test_send_request_result_round_trip() -> None:
    meta = metadata()
    el = m.build_send_request_response(meta, signature=fake_signature("#SIGNED_BY_SMEV"))
    received = round_trip(el, "SendRequest")
    assert etree.QName(received).localname == "SendRequestResponse"
    assert r.read_send_result(received) == meta
    wire = received.find(f"{{{SMEV_TYPES}}}MessageMetadata")
    assert wire is not None
    assert [etree.QName(c).localname for c in wire] == [
        "MessageId",
        "MessageType",
        "Sender",
        "SendingTimestamp",
        "DestinationName",
        "Recipient",
        "SupplementaryData",
        "DeliveryTimestamp",
        "Status",
    ]
    assert wire.findtext(f"{{{SMEV_TYPES}}}MessageType") == "REQUEST"
    assert signature_target(received).get("Id") == m.SMEV_ID
    assert find_signature(received, "SMEVSignature") is not None


def test_metadata_defaults_on_the_wire() -> None:
    """A participant without a name shows its mnemonic (HumanReadableName is required);
    DestinationName is the queue; the kind gives MessageType."""
    meta = metadata(recipient=ParticipantRef(mnemonic="PORTAL71"), destination=None)
    meta = meta.model_copy(update={"kind": MessageKind.RESPONSE})
    received = round_trip(m.build_send_response_response(meta), "SendResponse")
    got = r.read_send_result(received)
    assert got.recipient == ParticipantRef(mnemonic="PORTAL71", name="PORTAL71")
    assert (got.destination, got.kind) == ("responses.PORTAL71", MessageKind.RESPONSE)


def test_metadata_text_with_markup_characters_reads_back() -> None:
    """The metadata is written as text: names and types with ``&``, ``<``, ``>`` and
    quotes are escaped, not markup, and come back as they were."""
    meta = metadata(
        message_type="urn:a?b=1&c=<2>",
        sender=ParticipantRef(mnemonic="PORTAL71", name='Портал & "<услуги>"'),
        recipient=ParticipantRef(mnemonic="MVD", name="МВД > ГУ"),
    )
    received = round_trip(m.build_send_request_response(meta), "SendRequest")
    assert r.read_send_result(received) == meta


@pytest.mark.parametrize(
    "change",
    [
        {"sender": ParticipantRef(mnemonic="PORTAL71", name="bad\x01name")},
        {"status": "bad\x0bstatus"},
    ],
)
def test_metadata_text_xml_cannot_carry_is_refused(change: dict[str, object]) -> None:
    with pytest.raises(ValueError, match=r"U\+000[1B] cannot be written in XML"):
        m.build_send_response_response(metadata(**change))


def test_smev_client_sample_reads() -> None:
    root = parse_secure((DATA / "soap" / "send-request.xml").read_bytes())
    op, body_child = unwrap_envelope(root)
    assert op == "SendRequest"
    got = r.read_send_request(body_child)
    assert str(got.message_id) == "5b4e2a10-ca6c-11f0-8de9-0242ac120002"
    assert got.eol == datetime(2025, 11, 28, 12, 0, tzinfo=MSK)
    assert got.test
    assert r.read_caller_signature(body_child) is not None


# ---------------------------------------------------------------- GetRequest


def test_get_request_round_trip() -> None:
    selector = m.TypeSelector(
        timestamp=NOW,
        namespace_uri=MVD_PASSPORT_VALIDITY,
        root_element="PassportValidityRequest",
        node_id="node-1",
    )
    el = m.build_get_request(selector, signature=fake_signature("#SIGNED_BY_CALLER"))
    received = round_trip(el, "GetRequest")
    assert r.read_selector(received) == selector
    assert signature_target(received).get("Id") == m.CALLER_ID
    minimal = m.TypeSelector(timestamp=NOW)
    assert r.read_selector(round_trip(m.build_get_request(minimal), "GetRequest")) == minimal


def test_get_request_response_round_trip() -> None:
    sent = m.build_send_request(MSG_ID, content("mvd-passport-validity.request.xml"))
    sprd = sent[0]
    delivery = m.RequestDelivery(
        request_data=sprd,
        metadata=metadata(),
        reply_to="PORTAL71|5b4e2a10-ca6c-11f0-8de9-0242ac120002",
        sender_signature=fake_signature(),
    )
    el = m.build_get_request_response(delivery, signature=fake_signature("#SIGNED_BY_SMEV"))
    received = round_trip(el, "GetRequest")
    got = r.read_get_request_response(received)
    assert got is not None
    assert got.metadata == delivery.metadata
    # 1.1: the bus's signature inside RequestMessage, over its Request.
    message = received.find(f"{{{SMEV_TYPES}}}RequestMessage")
    assert message is not None
    assert find_signature(message, "SMEVSignature") is not None
    assert find_signature(received, "SMEVSignature") is None
    assert got.reply_to == delivery.reply_to
    assert etree.QName(got.sender_signature).localname == "Signature"
    data = r.read_request_data(got.request_data)
    assert data.message_id == MSG_ID
    validate_content(data.content, expect="request")
    # Signed parts travel unchanged (same canonical form as the consumer signed).
    assert etree.tostring(got.request_data, method="c14n", exclusive=True) == etree.tostring(
        sprd, method="c14n", exclusive=True
    )
    request = signature_target(message)
    assert etree.QName(request).localname == "Request"
    assert signature_target(request) is got.request_data


def test_get_request_response_empty_queue() -> None:
    received = round_trip(m.build_get_request_response(None), "GetRequest")
    assert r.read_get_request_response(received) is None


# ---------------------------------------------------------------- SendResponse


def test_send_response_with_content_round_trip() -> None:
    el = m.build_send_response(
        RESP_ID, "PORTAL71|reply", content=content("mvd-passport-validity.response.xml")
    )
    got = r.read_send_response(round_trip(el, "SendResponse"))
    assert (got.message_id, got.to, got.rejections, got.status) == (
        RESP_ID,
        "PORTAL71|reply",
        (),
        None,
    )
    assert got.content is not None
    assert validate_content(got.content, expect="response").namespace == MVD_PASSPORT_VALIDITY
    assert got.element.get("Id") == m.PROVIDER_ID


def test_send_response_rejected_round_trip() -> None:
    rejections = (
        m.Rejection("NO_DATA", "Сведения о паспорте не найдены"),
        m.Rejection("AGENCY_UNAVAILABLE", "Ведомственная система недоступна"),
        m.Rejection("INVALID_REQUEST", "серия паспорта из трёх цифр"),
    )
    el = m.build_send_response(RESP_ID, "to", rejections=rejections)
    received = round_trip(el, "SendResponse")
    # On the wire only the four 1.1 codes; the adapter's finer code leads the description.
    wire = [
        (
            rej.findtext(f"{{{SMEV_TYPES}}}RejectionReasonCode"),
            rej.findtext(f"{{{SMEV_TYPES}}}RejectionReasonDescription"),
        )
        for rej in received.iter(f"{{{SMEV_TYPES}}}RequestRejected")
    ]
    assert wire == [
        ("NO_DATA", "Сведения о паспорте не найдены"),
        ("FAILURE", "[AGENCY_UNAVAILABLE] Ведомственная система недоступна"),
        ("UNKNOWN_REQUEST_DESCRIPTION", "[INVALID_REQUEST] серия паспорта из трёх цифр"),
    ]
    got = r.read_send_response(received)
    assert got.rejections == rejections
    assert got.content is None


def test_a_prefix_under_another_code_is_plain_text() -> None:
    assert m.rejection_from_wire("NO_DATA", "[AGENCY_UNAVAILABLE] x") == m.Rejection(
        "NO_DATA", "[AGENCY_UNAVAILABLE] x"
    )


def test_send_response_request_status_round_trip() -> None:
    status = m.RequestStatus(3, "Заявление принято к рассмотрению", (("step", "2"),))
    el = m.build_send_response(RESP_ID, str(MSG_ID), request_status=status)
    got = r.read_send_response(round_trip(el, "SendResponse"))
    assert got.request_status == status
    assert (got.content, got.rejections, got.status) == (None, (), None)


def test_send_response_status_round_trip() -> None:
    status = m.AsyncStatus("underProcessing", "Запрос передан в территориальный орган")
    el = m.build_send_response(RESP_ID, str(MSG_ID), status=status, signature=fake_signature())
    got = r.read_send_response(round_trip(el, "SendResponse"))
    # OriginalMessageId (required in 1.1) is the request answered: To, when not given.
    assert got.status == m.AsyncStatus(status.category, status.details, MSG_ID)


def test_send_response_needs_exactly_one_answer() -> None:
    with pytest.raises(ValueError, match="exactly one"):
        m.build_send_response(RESP_ID, "to")
    with pytest.raises(ValueError, match="exactly one"):
        m.build_send_response(
            RESP_ID, "to", content=content("fns-inn.response.xml"), status=m.AsyncStatus("x")
        )


def test_send_response_result_round_trip() -> None:
    meta = metadata(
        message_id=RESP_ID, status=None, recipient=None, delivery_timestamp=None, destination=None
    )
    received = round_trip(m.build_send_response_response(meta), "SendResponse")
    assert r.read_send_result(received) == meta


def test_bad_rejection_code_fails_schema() -> None:
    el = m.build_send_response(RESP_ID, "to", rejections=[m.Rejection("NOPE", "x")])
    with pytest.raises(Exception, match="RejectionReasonCode"):
        validate_bus_element(el)


# ---------------------------------------------------------------- GetResponse


def test_get_response_round_trip() -> None:
    selector = m.TypeSelector(timestamp=NOW, namespace_uri=FNS_INN, root_element="InnResponse")
    received = round_trip(m.build_get_response(selector), "GetResponse")
    assert r.read_selector(received) == selector


def test_get_response_response_round_trip() -> None:
    sprsd = m.build_send_response(RESP_ID, "to", content=content("fns-inn.response.xml"))[0]
    delivery = m.ResponseDelivery(
        original_message_id=MSG_ID,
        response_data=sprsd,
        metadata=metadata(message_id=RESP_ID, message_type=FNS_INN),
        sender_signature=fake_signature("#SIGNED_BY_PROVIDER"),
    )
    received = round_trip(
        m.build_get_response_response(delivery, signature=fake_signature("#SIGNED_BY_SMEV")),
        "GetResponse",
    )
    got = r.read_get_response_response(received)
    assert got is not None
    assert got.original_message_id == MSG_ID
    assert got.metadata == delivery.metadata
    message = received.find(f"{{{SMEV_TYPES}}}ResponseMessage")
    assert message is not None
    assert find_signature(message, "SMEVSignature") is not None
    data = r.read_response_data(got.response_data)
    assert data.content is not None
    validate_content(data.content, expect="response")
    assert (
        r.read_get_response_response(round_trip(m.build_get_response_response(None), "GetResponse"))
        is None
    )


# ---------------------------------------------------------------- Ack


@pytest.mark.parametrize("accepted", [True, False])
def test_ack_round_trip(accepted: bool) -> None:
    received = round_trip(m.build_ack(MSG_ID, accepted=accepted), "Ack")
    assert r.read_ack(received) == m.AckTarget(MSG_ID, accepted)
    assert etree.QName(signature_target(received)).localname == "AckTargetMessage"


def test_ack_accepted_defaults_to_true() -> None:
    el = m.build_ack(MSG_ID)
    del el[0].attrib["accepted"]
    assert r.read_ack(el).accepted is True


def test_ack_response_round_trip() -> None:
    received = round_trip(m.build_ack_response(), "Ack")
    assert len(received) == 0


# ---------------------------------------------------------------- GetStatus


def test_get_status_round_trip() -> None:
    received = round_trip(m.build_get_status(NOW, signature=fake_signature()), "GetStatus")
    assert r.read_get_status(received) == NOW
    assert signature_target(received).get("Id") == m.CALLER_ID
    assert etree.QName(signature_target(received)).localname == "Timestamp"


def test_get_status_response_round_trip() -> None:
    notice = m.StatusNotice(
        MSG_ID, "requestIsRejectedBySmev", "request FAILED: no queue", "failed", "no queue"
    )
    el = m.build_get_status_response(notice, signature=fake_signature("#SIGNED_BY_SMEV"))
    received = round_trip(el, "GetStatus")
    assert r.read_get_status_response(received) == notice
    message = received.find(f"{{{SMEV_TYPES}}}SmevAsyncProcessingMessage")
    assert message is not None
    assert signature_target(message).get("Id") == m.SMEV_ID
    assert find_signature(message, "SMEVSignature") is not None
    empty = round_trip(m.build_get_status_response(None), "GetStatus")
    assert r.read_get_status_response(empty) is None


def test_get_incoming_queue_statistics_round_trip() -> None:
    el = m.build_get_incoming_queue_statistics(NOW, node_id="node-1", signature=fake_signature())
    received = round_trip(el, "GetIncomingQueueStatistics")
    assert r.read_get_incoming_queue_statistics(received) == (NOW, "node-1")
    assert etree.QName(signature_target(received)).localname == "Timestamp"
    stats = (m.QueueStatistic("requests.ZAGS", 3), m.QueueStatistic("responses.ZAGS", 0))
    answer = round_trip(
        m.build_get_incoming_queue_statistics_response(stats), "GetIncomingQueueStatistics"
    )
    assert r.read_get_incoming_queue_statistics_response(answer) == stats


def test_naive_timestamps_are_refused_when_building() -> None:
    with pytest.raises(ValueError, match="time zone"):
        m.build_get_status(datetime(2025, 1, 1))


def test_utc_timestamps_round_trip() -> None:
    selector = m.TypeSelector(timestamp=datetime(2025, 1, 1, tzinfo=UTC))
    assert r.read_selector(round_trip(m.build_get_request(selector), "GetRequest")) == selector


# ---------------------------------------------------------------- readers refuse bad structure


def test_reader_refuses_missing_element() -> None:
    el = m.build_send_request(MSG_ID, content("fns-inn.request.xml"))
    sprd = el[0]
    sprd.remove(sprd[0])  # MessageID
    with pytest.raises(InvalidContent, match="has no <MessageID>"):
        r.read_send_request(el)


def test_reader_refuses_naive_timestamp() -> None:
    el = m.build_get_request(m.TypeSelector(timestamp=NOW))
    el[0].find("{*}Timestamp").text = "2025-11-26T10:30:00"  # type: ignore[union-attr]
    with pytest.raises(InvalidContent, match="no time zone"):
        r.read_selector(el)


def test_reader_refuses_two_content_elements() -> None:
    el = m.build_send_request(MSG_ID, content("fns-inn.request.xml"))
    el[0].find("{*}MessagePrimaryContent").append(content("fns-inn.request.xml"))  # type: ignore[union-attr]
    with pytest.raises(InvalidContent, match="exactly one element"):
        r.read_send_request(el)


def test_reader_refuses_wrong_element() -> None:
    with pytest.raises(InvalidContent, match="expected <AckRequest>"):
        r.read_ack(m.build_get_status(NOW))


# ---------------------------------------------------------------- envelopes and faults


def test_soap_action() -> None:
    assert soap_action(OPERATIONS[0]) == "urn:SendRequest"


def envelope(body: str, header: str = "") -> etree._Element:
    return parse_secure(
        f'<soap:Envelope xmlns:soap="{SOAP_ENV}">{header}<soap:Body>{body}</soap:Body>'
        "</soap:Envelope>".encode()
    )


@pytest.mark.parametrize(
    ("document", "match"),
    [
        (b'<e:Envelope xmlns:e="http://www.w3.org/2003/05/soap-envelope"/>', "SOAP 1.2"),
        (b"<Envelope/>", "expected a SOAP 1.1"),
    ],
)
def test_unwrap_refuses_non_soap11(document: bytes, match: str) -> None:
    with pytest.raises(InvalidContent, match=match):
        unwrap_envelope(parse_secure(document))


def test_unwrap_refuses_bad_bodies() -> None:
    ack = etree.tostring(m.build_ack_response()).decode()
    with pytest.raises(InvalidContent, match="exactly one element, found 2"):
        unwrap_envelope(envelope(ack + ack))
    with pytest.raises(InvalidContent, match="found 0"):
        unwrap_envelope(envelope(""))
    with pytest.raises(InvalidContent, match="not a message-exchange operation"):
        unwrap_envelope(envelope('<x:AckRequest xmlns:x="urn:other"/>'))
    with pytest.raises(InvalidContent, match="not a message-exchange operation"):
        unwrap_envelope(envelope(ack.replace("AckResponse", "DeleteAllRequest")))


def test_unwrap_skips_comments_and_processing_instructions() -> None:
    ack = etree.tostring(m.build_ack_response()).decode()
    root = envelope(
        f"<!-- before --><?pi x?>{ack}<!-- after -->", header="<soap:Header/><!-- h -->"
    )
    operation, child = unwrap_envelope(root)
    assert (operation, etree.QName(child).localname) == ("Ack", "AckResponse")
    with pytest.raises(InvalidContent, match="found 0"):
        unwrap_envelope(envelope("<!-- only a comment -->"))


def test_unwrap_honours_must_understand() -> None:
    ack = etree.tostring(m.build_ack_response()).decode()
    header = '<soap:Header><w:Security xmlns:w="urn:wsse" soap:mustUnderstand="1"/></soap:Header>'
    with pytest.raises(InvalidContent, match="mustUnderstand"):
        unwrap_envelope(envelope(ack, header))
    ignorable = '<soap:Header><w:Trace xmlns:w="urn:t">1</w:Trace></soap:Header>'
    assert unwrap_envelope(envelope(ack, ignorable))[0] == "Ack"


def test_fault_round_trip() -> None:
    error = SchemaViolation("Element MessageID: not a version 1 UUID")
    wire = smev_fault(error, Operation.SEND_REQUEST)
    root = parse_secure(wire)
    fault = parse_fault(root)
    assert fault is not None
    assert fault.faultcode == "soap:Client"
    assert fault.code == "schema_violation"
    assert fault.element == "InvalidContent"
    assert fault.description == "Element MessageID: not a version 1 UUID"
    assert fault.faultstring == "Element MessageID: not a version 1 UUID"
    detail = root.find(f".//{{{SMEV_FAULTS}}}InvalidContent")
    assert detail is not None
    validate_bus_element(detail)
    with pytest.raises(InvalidContent, match="parse_fault"):
        unwrap_envelope(root)


def test_fault_without_description_reads_the_faultstring() -> None:
    fault = parse_fault(parse_secure(smev_fault(SenderNotRegistered("who?"), Operation.ACK)))
    assert fault is not None
    assert (fault.element, fault.code, fault.description) == (
        "SenderIsNotRegistered",
        "sender_not_registered",
        "who?",
    )


def test_parse_fault_without_bus_fault_and_non_fault() -> None:
    root = envelope(
        "<soap:Fault><faultcode>soap:Server</faultcode><faultstring>oops</faultstring></soap:Fault>"
    )
    fault = parse_fault(root)
    assert fault is not None
    assert (fault.faultcode, fault.faultstring, fault.code) == ("soap:Server", "oops", None)
    assert parse_fault(envelope(etree.tostring(m.build_ack_response()).decode())) is None


def test_attach_signature_replaces_and_checks() -> None:
    el = m.build_send_request(MSG_ID, content("fns-inn.request.xml"))
    first, second = fake_signature("#a"), fake_signature("#b")
    attach_signature(el, first)
    attach_signature(el, second)
    assert len(el) == 2
    assert find_signature(el) is second
    with pytest.raises(ValueError, match="ds:Signature"):
        attach_signature(el, etree.Element("NotASignature"))
    with pytest.raises(InvalidContent, match="not a signed bus element"):
        signature_target(m.build_ack_response())
    validate_bus_element(el)


@pytest.mark.parametrize(
    ("body", "missing"),
    [
        (m.build_ack(MSG_ID), "AckTargetMessage"),
        (m.build_get_request(m.TypeSelector(NOW)), "MessageTypeSelector"),
        (etree.Element(f"{{{SMEV_TYPES}}}RequestMessage"), "Request"),
    ],
)
def test_signature_target_missing_is_invalid_content(body: etree._Element, missing: str) -> None:
    """Found by fuzzing: the target's name was cut out of its path at the last "/", which
    falls inside the namespace URI, and etree.QName raised ValueError."""
    for child in list(body):
        body.remove(child)
    with pytest.raises(InvalidContent, match=f"has no <{missing}> to sign"):
        signature_target(body)


def test_empty_signature_container_fails_schema() -> None:
    el = m.build_send_request(MSG_ID, content("fns-inn.request.xml"))
    etree.SubElement(
        el, el[0].tag.replace("SenderProvidedRequestData", "CallerInformationSystemSignature")
    )
    with pytest.raises(Exception, match="CallerInformationSystemSignature"):
        validate_bus_element(el)
