"""The two tables between the bus's model and the SMEV 3 (1.1) wire.

* journal state -> ``InteractionStatusType`` (gateway.core.interaction_status), walked for
  every kind and state;
* stable error code -> the named fault of each operation (gateway.core.smev_faults), walked
  for every error class x operation: the element is one the operation declares in the
  served WSDL, and the serialized fault validates against the faults schema.
"""

from __future__ import annotations

import functools
from pathlib import Path

import pytest
from lxml import etree

from gateway.core import errors
from gateway.core.envelope import MessageKind
from gateway.core.interaction_status import STATUS_TABLE, InteractionStatus, interaction_status
from gateway.core.lifecycle import MessageState
from gateway.core.smev_faults import (
    FAULT_TABLE,
    OPERATION_FAULTS,
    Operation,
    SignatureFaultCode,
    named_fault,
)
from gateway.xml.smev_faults import smev_fault

SCHEMAS = Path(__file__).resolve().parents[2] / "xsd" / "smev3" / "1.1"
XS = "{http://www.w3.org/2001/XMLSchema}"
WSDL = "http://schemas.xmlsoap.org/wsdl/"
SOAP = "http://schemas.xmlsoap.org/soap/envelope/"
FAULTS_NS = "urn://x-artefacts-smev-gov-ru/services/message-exchange/types/faults/1.1"


@functools.cache
def _faults_schema() -> etree.XMLSchema:
    parser = etree.XMLParser(no_network=True, load_dtd=False, resolve_entities=False)
    return etree.XMLSchema(
        etree.parse(str(SCHEMAS / "smev-message-exchange-faults-1.1.xsd"), parser)
    )


def _enumeration(type_name: str) -> set[str]:
    tree = etree.parse(str(SCHEMAS / "smev-message-exchange-basic-1.1.xsd"))
    simple = tree.find(f"{XS}simpleType[@name='{type_name}']")
    assert simple is not None
    return {e.get("value", "") for e in simple.iter(f"{XS}enumeration")}


# ------------------------------------------------------------------ statuses


def test_status_codes_are_the_schemas() -> None:
    assert {s.value for s in InteractionStatus} == _enumeration("InteractionStatusType")


@pytest.mark.parametrize("kind", list(MessageKind))
@pytest.mark.parametrize("state", list(MessageState))
def test_every_state_of_every_kind_has_a_code(kind: MessageKind, state: MessageState) -> None:
    assert interaction_status(kind, state) in InteractionStatus


def test_a_message_not_in_the_journal_does_not_exist() -> None:
    assert interaction_status(MessageKind.REQUEST, None) is InteractionStatus.DOES_NOT_EXIST


def test_the_request_path_reads_as_smev_reports_it() -> None:
    path = [
        MessageState.ACCEPTED,
        MessageState.QUEUED,
        MessageState.DELIVERED,
        MessageState.ACKED,
        MessageState.RESPONDED,
        MessageState.RESPONSE_DELIVERED,
    ]
    assert [STATUS_TABLE[MessageKind.REQUEST][s].value for s in path] == [
        "requestIsQueued",
        "requestIsAcceptedBySmev",
        "requestIsAcceptedBySmev",
        "underProcessing",
        "responseIsAcceptedBySmev",
        "responseIsDelivered",
    ]


def test_a_dead_letter_is_not_reported_final() -> None:
    # An operator replays it to QUEUED; the sender must not give up on it.
    assert (
        interaction_status(MessageKind.REQUEST, MessageState.DEAD_LETTERED)
        is InteractionStatus.REQUEST_IS_ACCEPTED_BY_SMEV
    )


# ------------------------------------------------------------------ faults


def _error_classes() -> list[type[errors.SmevbusError]]:
    seen: dict[str, type[errors.SmevbusError]] = {}
    todo: list[type[errors.SmevbusError]] = [errors.SmevbusError]
    while todo:
        cls = todo.pop()
        seen.setdefault(cls.code, cls)
        todo.extend(cls.__subclasses__())
    return list(seen.values())


def _declared_faults() -> set[str]:
    tree = etree.parse(str(SCHEMAS / "smev-message-exchange-faults-1.1.xsd"))
    return {e.get("name", "") for e in tree.getroot() if e.tag == f"{XS}element"}


def test_operation_fault_lists_are_the_served_wsdls() -> None:
    wsdl = etree.parse(str(SCHEMAS / "smev-message-exchange-service-1.1.wsdl")).getroot()
    ns = {"w": WSDL}
    element_of = {
        m.get("name"): m.find("w:part", ns).get("element", "").split(":")[1]  # type: ignore[union-attr]
        for m in wsdl.findall("w:message", ns)
    }
    listed = {
        op.get("name"): frozenset(
            element_of[f.get("message", "").split(":")[1]] for f in op.findall("w:fault", ns)
        )
        for op in wsdl.findall("w:portType/w:operation", ns)
    }
    assert listed == {op.value: faults for op, faults in OPERATION_FAULTS.items()}


def test_the_table_names_only_declared_fault_elements() -> None:
    named = {name for by_reason in FAULT_TABLE.values() for c in by_reason.values() for name in c}
    assert named <= _declared_faults()


def test_every_stable_code_is_in_the_table() -> None:
    assert {cls.code for cls in _error_classes()} <= set(FAULT_TABLE)


def _parse(envelope: bytes) -> tuple[str, etree._Element]:
    root = etree.fromstring(envelope)
    fault = root.find(f"{{{SOAP}}}Body/{{{SOAP}}}Fault")
    assert fault is not None
    detail = fault.find("detail")
    assert detail is not None
    assert len(detail) == 1
    return fault.findtext("faultcode") or "", detail[0]


REASONS = (None, "message_id", "eol", "message_type", "content_kind", "missing", "reserved_id")


@pytest.mark.parametrize("operation", list(Operation))
@pytest.mark.parametrize("cls", _error_classes(), ids=lambda c: c.code)
def test_every_error_becomes_a_declared_valid_fault(
    cls: type[errors.SmevbusError], operation: Operation
) -> None:
    for reason in REASONS:
        error = cls("what went wrong", reason=reason, line=3, namespace="urn:x", root="R")
        faultcode, element = _parse(smev_fault(error, operation))
        name = etree.QName(element)
        assert name.namespace == FAULTS_NS
        assert name.localname in OPERATION_FAULTS[operation]
        assert _faults_schema().validate(etree.ElementTree(element)), _faults_schema().error_log
        base = "soap:Client" if error.origin is errors.Origin.CLIENT else "soap:Server"
        assert faultcode == f"{base}.{error.code}"


def _fault(error: errors.SmevbusError, operation: Operation) -> str:
    return named_fault(error, operation).element


def test_refinements_by_reason_and_operation() -> None:
    eol = errors.InvalidContent("too late", reason="eol")
    assert _fault(eol, Operation.SEND_REQUEST) == "EndOfLifeReached"
    assert _fault(eol, Operation.SEND_RESPONSE) == "InvalidContent"
    not_v1 = errors.InvalidContent("not v1", reason="message_id")
    assert _fault(not_v1, Operation.SEND_RESPONSE) == "InvalidMessageIdFormat"
    unknown = errors.SchemaViolation("unknown type", reason="message_type", namespace="urn:x")
    assert _fault(unknown, Operation.SEND_REQUEST) == "BusinessDataTypeIsNotSupported"
    assert _fault(unknown, Operation.GET_REQUEST) == "UnknownMessageType"
    wrong_kind = errors.SchemaViolation("a request root", reason="content_kind")
    assert _fault(wrong_kind, Operation.SEND_RESPONSE) == "IncorrectResponseContentType"
    denied = errors.AccessDenied("not yours")
    assert _fault(denied, Operation.SEND_REQUEST) == "AccessDenied"
    assert _fault(denied, Operation.SEND_RESPONSE) == "BusinessDataTypeIsNotSupported"
    assert _fault(denied, Operation.GET_RESPONSE) == "UnknownMessageType"
    assert _fault(denied, Operation.ACK) == "TargetMessageIsNotFound"
    assert _fault(errors.NotFound("no such message"), Operation.ACK) == "TargetMessageIsNotFound"
    assert _fault(errors.QuotaExceeded("slow down"), Operation.GET_STATUS) == "SMEVFailure"


def test_signature_sub_codes() -> None:
    def sub(error: errors.SmevbusError) -> SignatureFaultCode | None:
        return named_fault(error, Operation.SEND_REQUEST).signature_code

    assert sub(errors.SignatureInvalid("none", reason="missing")) is (
        SignatureFaultCode.NO_SIGNATURE_FOUND
    )
    assert sub(errors.SignatureInvalid("changed")) is SignatureFaultCode.SIGNATURE_IS_INVALID
    assert sub(errors.CertificateExpired("old")) is SignatureFaultCode.CERTIFICATE_IS_EXPIRED
    assert sub(errors.CertificateUntrusted("who")) is SignatureFaultCode.CERTIFICATE_IS_NOT_FOUND


def test_schema_errors_become_validation_errors_with_their_lines() -> None:
    error = errors.SchemaViolation(
        "two problems",
        errors=[{"line": 7, "message": "first"}, {"line": 9, "message": "second"}],
    )
    _, element = _parse(smev_fault(error, Operation.SEND_REQUEST))
    found = [
        (e.get("errorPosition"), e.text) for e in element.iter(f"{{{FAULTS_NS}}}ValidationError")
    ]
    assert found == [("7", "first"), ("9", "second")]


def test_an_unexpected_exception_is_an_smev_failure_without_its_words() -> None:
    faultcode, element = _parse(smev_fault(RuntimeError("secret path /etc"), Operation.ACK))
    assert etree.QName(element).localname == "SMEVFailure"
    assert faultcode == "soap:Server.internal"
    assert b"secret" not in smev_fault(RuntimeError("secret path /etc"), Operation.ACK)
