"""SOAP 1.1 envelopes, faults and signature containers of the message exchange.

The Body of every bus SOAP message holds exactly one element of the types namespace,
``<Operation>Request`` or ``<Operation>Response`` (SMEV 3 naming), or a SOAP Fault whose
detail holds one ``faults:BusFault``. Building and reading the Body elements themselves
lives in :mod:`gateway.xml.messages`.

Signatures: each signed Body element has one child carrying an ``Id`` (the signature
target, see :func:`signature_target`) and, as its last child, a container
(``CallerInformationSystemSignature``, ``SMEVSignature``, ...) holding one ``ds:Signature``.
The crypto layer signs the target and calls :func:`attach_signature`.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from lxml import etree

from gateway.core.errors import InvalidContent
from gateway.xml.namespaces import DS, SMEV_BASIC, SMEV_FAULTS, SMEV_TYPES, SOAP_ENV, qname
from gateway.xml.text import find_text

OPERATIONS: tuple[str, ...] = (
    "SendRequest",
    "GetRequest",
    "SendResponse",
    "GetResponse",
    "Ack",
    "GetStatus",
)
"""The six message-exchange operations; soapAction is ``urn:<Operation>``."""

SOAP12_ENV = "http://www.w3.org/2003/05/soap-envelope"

SignatureContainer = Literal[
    "CallerInformationSystemSignature", "SenderInformationSystemSignature", "SMEVSignature"
]
FaultCode = Literal["soap:Client", "soap:Server"]

_T = f"{{{SMEV_TYPES}}}"
_B = f"{{{SMEV_BASIC}}}"
_SIGNATURE_TARGETS: dict[str, str] = {
    "SendRequestRequest": f"{_T}SenderProvidedRequestData",
    "SendResponseRequest": f"{_T}SenderProvidedResponseData",
    "GetRequestRequest": f"{_B}MessageTypeSelector",
    "GetResponseRequest": f"{_B}MessageTypeSelector",
    "AckRequest": f"{_B}AckTargetMessage",
    "GetStatusRequest": f"{_T}MessageID",
    "SendRequestResponse": f"{_T}MessageMetadata",
    "SendResponseResponse": f"{_T}MessageMetadata",
    "GetRequestResponse": f"{_T}RequestMessage/{_T}Request",
    "GetResponseResponse": f"{_T}ResponseMessage/{_T}Response",
    "Request": f"{_T}SenderProvidedRequestData",
    "Response": f"{_T}SenderProvidedResponseData",
}
"""Body element (or Request/Response) local name -> path of the element its signature covers."""


def soap_action(operation: str) -> str:
    """The SOAPAction header value for ``operation`` (``urn:SendRequest``)."""
    return f"urn:{operation}"


_ENVELOPE_START = (
    b"<?xml version='1.0' encoding='UTF-8'?>\n"
    b'<soap:Envelope xmlns:soap="' + SOAP_ENV.encode() + b'"><soap:Header/><soap:Body>'
)
_ENVELOPE_END = b"</soap:Body></soap:Envelope>"


def wrap_envelope(body_child: etree._Element) -> bytes:
    """Serialize ``body_child`` in a SOAP 1.1 envelope.

    Written around its serialization, not appended into an envelope tree: lxml's append
    renames prefixes in what it moves (:mod:`gateway.xml.graft`), and a signature with
    exclusive c14n over what was signed in memory would no longer verify on the wire."""
    return (
        _ENVELOPE_START
        + etree.tostring(body_child, encoding="UTF-8", with_tail=False)
        + _ENVELOPE_END
    )


def _body(root: etree._Element) -> etree._Element:
    """The single element child of soap:Body, checked for SOAP 1.1 structure."""
    if root.tag == qname(SOAP12_ENV, "Envelope"):
        raise InvalidContent("SOAP 1.2 envelopes are not supported; send SOAP 1.1", reason="soap")
    if root.tag != qname(SOAP_ENV, "Envelope"):
        raise InvalidContent(
            f"document root is <{root.tag}>, expected a SOAP 1.1 <Envelope> in {SOAP_ENV}",
            reason="soap",
        )
    children = [c for c in root if isinstance(c.tag, str)]
    if children and children[0].tag == qname(SOAP_ENV, "Header"):
        _check_headers(children.pop(0))
    if len(children) != 1 or children[0].tag != qname(SOAP_ENV, "Body"):
        raise InvalidContent(
            "SOAP Envelope must hold an optional Header followed by one Body", reason="soap"
        )
    payload = [c for c in children[0] if isinstance(c.tag, str)]
    if len(payload) != 1:
        raise InvalidContent(
            f"SOAP Body must hold exactly one element, found {len(payload)}", reason="soap"
        )
    return payload[0]


def _check_headers(header: etree._Element) -> None:
    # SOAP 1.1 section 4.2.3: a header block the receiver must understand but does not
    # is a fault. The bus understands no header blocks.
    for block in header:
        if isinstance(block.tag, str) and block.get(qname(SOAP_ENV, "mustUnderstand")) in (
            "1",
            "true",
        ):
            raise InvalidContent(
                f"SOAP header <{block.tag}> has mustUnderstand=1 but the bus does not "
                "understand it; remove it",
                reason="must_understand",
            )


def unwrap_envelope(root: etree._Element) -> tuple[str, etree._Element]:
    """Return ``(operation, body_child)`` of a bus SOAP message, e.g. ``("SendRequest", el)``.

    Raises InvalidContent for a non-SOAP-1.1 document, a Body without exactly one element,
    an element outside the types namespace or not named ``<Operation>Request|Response``,
    and a Fault (check :func:`parse_fault` first on the client side).
    """
    child = _body(root)
    tag = etree.QName(child)
    if child.tag == qname(SOAP_ENV, "Fault"):
        raise InvalidContent(
            "SOAP Body holds a Fault, not an operation; read it with parse_fault", reason="fault"
        )
    if tag.namespace == SMEV_TYPES:
        for suffix in ("Request", "Response"):
            operation = tag.localname.removesuffix(suffix)
            if tag.localname.endswith(suffix) and operation in OPERATIONS:
                return operation, child
    raise InvalidContent(
        f"SOAP Body element <{tag.text}> is not a message-exchange operation; expected one of "
        f"{', '.join(op + 'Request' for op in OPERATIONS)} in namespace {SMEV_TYPES}",
        reason="operation",
        element=tag.text,
    )


@dataclass(frozen=True)
class SoapFault:
    """A SOAP 1.1 Fault as a client reads it. ``code`` etc. are None if there is no BusFault."""

    faultcode: str
    faultstring: str
    code: str | None
    origin: str | None
    description: str | None


def build_fault(
    faultcode: FaultCode, faultstring: str, code: str, origin: str, description: str
) -> bytes:
    """A serialized SOAP 1.1 Fault envelope with a ``faults:BusFault`` detail.

    ``faultcode`` is ``soap:Client`` when the sender must fix something, else ``soap:Server``.
    """
    envelope = etree.Element(qname(SOAP_ENV, "Envelope"), nsmap={"soap": SOAP_ENV})
    body = etree.SubElement(envelope, qname(SOAP_ENV, "Body"))
    fault = etree.SubElement(body, qname(SOAP_ENV, "Fault"))
    # Fault children are unqualified in SOAP 1.1.
    etree.SubElement(fault, "faultcode").text = faultcode
    etree.SubElement(fault, "faultstring").text = faultstring
    detail = etree.SubElement(fault, "detail")
    bus_fault = etree.SubElement(
        detail, qname(SMEV_FAULTS, "BusFault"), nsmap={"faults": SMEV_FAULTS}
    )
    etree.SubElement(bus_fault, qname(SMEV_FAULTS, "Code")).text = code
    etree.SubElement(bus_fault, qname(SMEV_FAULTS, "Origin")).text = origin
    etree.SubElement(bus_fault, qname(SMEV_FAULTS, "Description")).text = description
    return etree.tostring(envelope, xml_declaration=True, encoding="UTF-8")


def parse_fault(root: etree._Element) -> SoapFault | None:
    """The Fault in a SOAP 1.1 response, or None if the Body holds something else."""
    child = _body(root)
    if child.tag != qname(SOAP_ENV, "Fault"):
        return None
    faultcode = find_text(child, "faultcode")
    if faultcode is None:
        raise InvalidContent("SOAP Fault has no faultcode", reason="fault")
    bus_fault = child.find(f"detail/{qname(SMEV_FAULTS, 'BusFault')}")

    def field(name: str) -> str | None:
        return None if bus_fault is None else find_text(bus_fault, qname(SMEV_FAULTS, name))

    return SoapFault(
        faultcode=faultcode.strip(),
        faultstring=(find_text(child, "faultstring") or "").strip(),
        code=field("Code"),
        origin=field("Origin"),
        description=field("Description"),
    )


def signature_target(element: etree._Element) -> etree._Element:
    """The child of a Body element (or of Request/Response) that its signature covers.

    E.g. ``SenderProvidedRequestData`` of ``SendRequestRequest`` (caller's signature),
    ``Request`` of ``GetRequestResponse`` (SMEVSignature), ``SenderProvidedRequestData`` of
    ``Request`` (SenderInformationSystemSignature). The target carries the ``Id`` the
    XMLDSig Reference points to.
    """
    tag = etree.QName(element)
    path = _SIGNATURE_TARGETS.get(tag.localname) if tag.namespace == SMEV_TYPES else None
    if path is None:
        raise InvalidContent(f"<{tag.text}> is not a signed bus element", reason="structure")
    target = element.find(path)
    if target is None:
        name = path.rsplit("}", 1)[-1]  # the last step's local name (URIs hold "/")
        raise InvalidContent(f"<{tag.localname}> has no <{name}> to sign", reason="structure")
    return target


def attach_signature(
    parent: etree._Element,
    signature: etree._Element,
    container: SignatureContainer = "CallerInformationSystemSignature",
) -> etree._Element:
    """Put ``signature`` (a ``ds:Signature``) into ``parent``'s signature container.

    The container is the last child of its parent in every bus element; an existing one
    is replaced. The signature element is moved, not copied. Returns the container.
    """
    if signature.tag != qname(DS, "Signature"):
        raise ValueError(f"expected a ds:Signature element, got <{signature.tag}>")
    tag = qname(SMEV_TYPES, container)
    for old in parent.findall(tag):
        parent.remove(old)
    holder = etree.SubElement(parent, tag)
    holder.append(signature)
    return holder


def find_signature(
    parent: etree._Element, container: SignatureContainer = "CallerInformationSystemSignature"
) -> etree._Element | None:
    """The ``ds:Signature`` in ``parent``'s container, or None if it is absent."""
    holder = parent.find(qname(SMEV_TYPES, container))
    if holder is None:
        return None
    return holder.find(qname(DS, "Signature"))
