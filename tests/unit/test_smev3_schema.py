"""The SMEV 3 message-exchange 1.1 WSDL/XSDs in xsd/smev3/1.1 against sample messages.

The samples in tests/data/smev3/1.1 are written to the published 1.1 structure: every
operation's request and response, and a SOAP Fault for each named fault element. They must
validate; the ones in ``invalid/`` carry the differences the issue found on the old /ws wire
(``MessageID`` for ``MessageId``, a namespace as ``MessageType``, ``SMEVSignature`` beside
``RequestMessage``, ...) and must not.
"""

from __future__ import annotations

import functools
from pathlib import Path

import pytest
from lxml import etree

ROOT = Path(__file__).resolve().parents[2]
SCHEMAS = ROOT / "xsd" / "smev3" / "1.1"
SAMPLES = ROOT / "tests" / "data" / "smev3" / "1.1"

SOAP = "http://schemas.xmlsoap.org/soap/envelope/"
WSDL = "http://schemas.xmlsoap.org/wsdl/"
_BASE = "urn://x-artefacts-smev-gov-ru/services/message-exchange"
TYPES = f"{_BASE}/types/1.1"
FAULTS = f"{_BASE}/types/faults/1.1"

OPERATIONS = (
    "SendRequest",
    "GetRequest",
    "SendResponse",
    "GetResponse",
    "Ack",
    "GetStatus",
    "GetIncomingQueueStatistics",
)

_COMMON = {"InvalidContent", "SMEVFailure", "SenderIsNotRegistered", "SignatureVerificationFault"}
FAULTS_BY_OPERATION = {
    "SendRequest": _COMMON
    | {
        "AccessDenied",
        "AttachmentContentMiscoordination",
        "AttachmentSizeLimitExceeded",
        "BusinessDataTypeIsNotSupported",
        "DestinationOverflow",
        "EndOfLifeReached",
        "InvalidMessageIdFormat",
        "MessageIsAlreadySent",
        "QuoteLimitExceeded",
        "RecipientIsNotFound",
        "StaleMessageId",
        "TransactionCodeInvalid",
    },
    "SendResponse": _COMMON
    | {
        "AttachmentContentMiscoordination",
        "AttachmentSizeLimitExceeded",
        "BusinessDataTypeIsNotSupported",
        "DestinationOverflow",
        "IncorrectResponseContentType",
        "InvalidMessageIdFormat",
        "MessageIsAlreadySent",
        "QuoteLimitExceeded",
        "RecipientIsNotFound",
        "StaleMessageId",
    },
    "GetRequest": _COMMON | {"UnknownMessageType"},
    "GetResponse": _COMMON | {"UnknownMessageType"},
    "GetStatus": _COMMON | {"UnknownMessageType"},
    "Ack": _COMMON | {"TargetMessageIsNotFound"},
    "GetIncomingQueueStatistics": set(_COMMON),
}
"""Named faults per operation in the published 1.1 WSDL."""


@functools.cache
def _schema(name: str) -> etree.XMLSchema:
    parser = etree.XMLParser(no_network=True, load_dtd=False, resolve_entities=False)
    return etree.XMLSchema(etree.parse(str(SCHEMAS / name), parser))


def _payload(path: Path) -> tuple[etree._Element, etree.XMLSchema]:
    """The Body child, or the fault detail element, and the schema that declares it."""
    envelope = etree.parse(str(path), etree.XMLParser(no_network=True, resolve_entities=False))
    body = envelope.getroot().find(f"{{{SOAP}}}Body")
    assert body is not None
    assert len(body) == 1, f"{path.name}: one Body child expected"
    child = body[0]
    if child.tag == f"{{{SOAP}}}Fault":
        detail = child.find("detail")
        assert detail is not None
        assert len(detail) == 1, f"{path.name}: one detail element expected"
        return detail[0], _schema("smev-message-exchange-faults-1.1.xsd")
    return child, _schema("smev-message-exchange-types-1.1.xsd")


def _errors(path: Path) -> list[str]:
    element, schema = _payload(path)
    ok = schema.validate(etree.ElementTree(element))
    return [] if ok else [f"line {e.line}: {e.message}" for e in schema.error_log]


def _files(folder: str) -> list[Path]:
    return sorted((SAMPLES / folder).glob("*.xml"))


@pytest.mark.parametrize("path", _files("valid") + _files("faults"), ids=lambda p: p.name)
def test_sample_validates(path: Path) -> None:
    assert _errors(path) == []


WRONG = {
    "AckTargetMessage-without-accepted.xml": "attribute 'accepted' is required",
    "Fault-BusFault.xml": "BusFault': No matching global declaration",
    "GetStatusRequest-without-signature.xml": "GetStatusRequest': Missing child element",
    "GetStatusResponse-MessageID-Status.xml": "MessageID': This element is not expected",
    "MessageMetadata-MessageID.xml": "MessageID': This element is not expected",
    "MessageMetadata-MessageType-namespace.xml": "MessageType': [facet 'enumeration']",
    "MessageMetadata-Status-QUEUED.xml": "The value 'QUEUED' is not an element",
    "MessageMetadata-without-DestinationName.xml": "Recipient': This element is not expected",
    "RequestRejected-unknown-code.xml": "The value 'INVALID_REQUEST' is not an element",
    "SMEVSignature-beside-RequestMessage.xml": "SMEVSignature': This element is not expected",
    "TransactionCode-1501.xml": "TransactionCode': [facet 'maxLength']",
}
"""Each wrong sample, and the words of the error it must be refused with."""


@pytest.mark.parametrize("path", _files("invalid"), ids=lambda p: p.name)
def test_wrong_sample_is_refused_for_its_fault(path: Path) -> None:
    errors = _errors(path)
    assert errors, f"{path.name} validated"
    assert WRONG[path.name] in errors[0]


@pytest.mark.parametrize("operation", OPERATIONS)
def test_every_operation_has_request_and_response_samples(operation: str) -> None:
    names = {
        p.name.split(".")[:2][1].split("-")[0] for p in (SAMPLES / "valid").glob(f"{operation}.*")
    }
    assert names == {"request", "response"}


def _fault_elements() -> set[str]:
    tree = etree.parse(str(SCHEMAS / "smev-message-exchange-faults-1.1.xsd"))
    return {
        e.get("name")
        for e in tree.getroot()
        if e.tag == "{http://www.w3.org/2001/XMLSchema}element"
    }


def test_every_declared_fault_has_a_sample() -> None:
    assert {p.stem for p in _files("faults")} == _fault_elements()


def test_wsdl_names_the_published_faults_per_operation() -> None:
    wsdl = etree.parse(str(SCHEMAS / "smev-message-exchange-service-1.1.wsdl")).getroot()
    ns = {"wsdl": WSDL}
    element_of = {
        m.get("name"): m.find("wsdl:part", ns).get("element").split(":")[1]
        for m in wsdl.findall("wsdl:message", ns)
    }
    port_type = wsdl.find("wsdl:portType", ns)
    found = {
        op.get("name"): {
            element_of[f.get("message").split(":")[1]] for f in op.findall("wsdl:fault", ns)
        }
        for op in port_type.findall("wsdl:operation", ns)
    }
    assert found == FAULTS_BY_OPERATION
    binding = wsdl.find("wsdl:binding", ns)
    actions = {
        op.get("name"): op.find("{http://schemas.xmlsoap.org/wsdl/soap/}operation").get(
            "soapAction"
        )
        for op in binding.findall("wsdl:operation", ns)
    }
    assert actions == {op: f"urn:{op}" for op in OPERATIONS}


def test_zeep_reads_the_wsdl_with_its_seven_operations() -> None:
    zeep = pytest.importorskip("zeep")
    client = zeep.Client(str(SCHEMAS / "smev-message-exchange-service-1.1.wsdl"))
    service = client.wsdl.services["SMEVMessageExchangeService"]
    port = service.ports["SMEVMessageExchangeEndpoint"]
    assert set(port.binding._operations) == set(OPERATIONS)
    # A client built from the WSDL knows each fault element it may be sent.
    for name in _fault_elements():
        assert client.get_element(f"{{{FAULTS}}}{name}") is not None
    assert client.get_element(f"{{{TYPES}}}GetStatusResponse") is not None
