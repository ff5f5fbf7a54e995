"""A named SMEV 3 (1.1) fault as a SOAP 1.1 Fault envelope.

Which element an error becomes is decided in :mod:`gateway.core.smev_faults`; this module
only writes it, with the details its type declares (xsd/smev3/1.1, faults schema).
"""

from __future__ import annotations

from lxml import etree

from gateway.core.errors import InternalError, SmevbusError
from gateway.core.smev_faults import NamedFault, Operation, named_fault
from gateway.xml.namespaces import SMEV_BASIC, SMEV_FAULTS, SOAP_ENV, qname

MESSAGE_BROKER = "smevbus"
"""``DestinationOverflow/MessageBrokerAddress``."""


def fault_detail(fault: NamedFault) -> etree._Element:
    """The fault element that goes into ``soap:Fault/detail``."""
    el = etree.Element(
        qname(SMEV_FAULTS, fault.element), nsmap={"fault": SMEV_FAULTS, "basic": SMEV_BASIC}
    )
    if not fault.carries_code:
        return el

    def sub(ns: str, name: str, text: str) -> etree._Element:
        child = etree.SubElement(el, qname(ns, name))
        child.text = text
        return child

    sub(SMEV_BASIC, "Code", fault.code)
    sub(SMEV_BASIC, "Description", fault.message)
    match fault.element:
        case "InvalidContent":
            for line, words in fault.validation_errors or ((0, fault.message),):
                sub(SMEV_FAULTS, "ValidationError", words).set("errorPosition", str(line))
        case "SignatureVerificationFault":
            sub(
                SMEV_FAULTS,
                "SignatureVerificationFault",
                fault.signature_code or "SignatureIsInvalid",
            )
        case "BusinessDataTypeIsNotSupported":
            sub(SMEV_FAULTS, "RootElementLocalName", fault.rejected_root[1])
            sub(SMEV_FAULTS, "RootElementNamespaceURI", fault.rejected_root[0])
        case "AttachmentSizeLimitExceeded":
            sub(SMEV_FAULTS, "PermittedTotalAttachmentSize", str(fault.limit))
            sub(SMEV_FAULTS, "RealTotalAttachmentSize", str(fault.size))
        case "QuoteLimitExceeded":
            sub(SMEV_FAULTS, "RemainedTotalQuoteSize", str(fault.limit))
            sub(SMEV_FAULTS, "RealTotalAttachmentSize", str(fault.size))
        case "DestinationOverflow":
            sub(SMEV_FAULTS, "MessageBrokerAddress", MESSAGE_BROKER)
            sub(SMEV_FAULTS, "DestinationName", fault.destination)
    return el


def build_named_fault(fault: NamedFault) -> bytes:
    """A serialized SOAP 1.1 Fault envelope carrying ``fault``."""
    envelope = etree.Element(qname(SOAP_ENV, "Envelope"), nsmap={"soap": SOAP_ENV})
    body = etree.SubElement(envelope, qname(SOAP_ENV, "Body"))
    soap_fault = etree.SubElement(body, qname(SOAP_ENV, "Fault"))
    # Fault children are unqualified in SOAP 1.1.
    etree.SubElement(soap_fault, "faultcode").text = fault.faultcode
    etree.SubElement(soap_fault, "faultstring").text = fault.message
    etree.SubElement(soap_fault, "detail").append(fault_detail(fault))
    return etree.tostring(envelope, xml_declaration=True, encoding="UTF-8")


def smev_fault(error: BaseException, operation: Operation | None) -> bytes:
    """Any error of ``operation`` as the SOAP Fault a 1.1 client expects.

    ``operation=None`` (refused before the operation was read) picks among the faults
    every operation declares."""
    if not isinstance(error, SmevbusError):
        error = InternalError("the bus failed to process the message; retry later")
    return build_named_fault(named_fault(error, operation))
