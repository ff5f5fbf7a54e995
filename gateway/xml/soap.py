"""SOAP 1.1 envelopes, faults and signature containers of the message exchange.

The Body of every bus SOAP message holds exactly one element of the types namespace,
``<Operation>Request`` or ``<Operation>Response`` (SMEV 3 naming), or a SOAP Fault whose
detail holds one named 1.1 fault (written by :mod:`gateway.xml.smev_faults`). Building
and reading the Body elements themselves lives in :mod:`gateway.xml.messages`.

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
    "GetIncomingQueueStatistics",
)
"""The seven message-exchange operations of 1.1; soapAction is ``urn:<Operation>``."""

SOAP12_ENV = "http://www.w3.org/2003/05/soap-envelope"

SignatureContainer = Literal[
    "CallerInformationSystemSignature", "SenderInformationSystemSignature", "SMEVSignature"
]

_T = f"{{{SMEV_TYPES}}}"
_B = f"{{{SMEV_BASIC}}}"
# The tags every SOAP request is checked against, written once (not a qname() call each).
_ENVELOPE = qname(SOAP_ENV, "Envelope")
_ENVELOPE_12 = qname(SOAP12_ENV, "Envelope")
_HEADER = qname(SOAP_ENV, "Header")
_BODY = qname(SOAP_ENV, "Body")
_FAULT = qname(SOAP_ENV, "Fault")
_SIGNATURE = qname(DS, "Signature")
_SIGNATURE_TARGETS: dict[str, str] = {
    "SendRequestRequest": f"{_T}SenderProvidedRequestData",
    "SendResponseRequest": f"{_T}SenderProvidedResponseData",
    "GetRequestRequest": f"{_B}MessageTypeSelector",
    "GetResponseRequest": f"{_B}MessageTypeSelector",
    "AckRequest": f"{_B}AckTargetMessage",
    "GetStatusRequest": f"{_B}Timestamp",
    "GetIncomingQueueStatisticsRequest": f"{_B}Timestamp",
    "SendRequestResponse": f"{_T}MessageMetadata",
    "SendResponseResponse": f"{_T}MessageMetadata",
    "RequestMessage": f"{_T}Request",
    "ResponseMessage": f"{_T}Response",
    "SmevAsyncProcessingMessage": f"{_T}AsyncProcessingStatusData",
    "Request": f"{_T}SenderProvidedRequestData",
    "Response": f"{_T}SenderProvidedResponseData",
}
"""Signed element's local name -> path of the element its signature covers: the Body
element, or for the bus's signature on a delivery ``RequestMessage``/``ResponseMessage``/
``SmevAsyncProcessingMessage`` (SMEVSignature inside them, as 1.1 has it), or the
author's inside ``Request``/``Response``."""
_TARGET_TAGS: dict[str, str] = {_T + name: tag for name, tag in _SIGNATURE_TARGETS.items()}
"""The same keyed by the signed element's Clark tag: one look-up, no QName."""
_OPERATION_OF: dict[str, str] = {
    f"{_T}{operation}{suffix}": operation
    for operation in OPERATIONS
    for suffix in ("Request", "Response")
}
"""A message-exchange Body element's Clark tag -> its operation."""


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
    if root.tag == _ENVELOPE_12:
        raise InvalidContent("SOAP 1.2 envelopes are not supported; send SOAP 1.1", reason="soap")
    if root.tag != _ENVELOPE:
        raise InvalidContent(
            f"document root is <{root.tag}>, expected a SOAP 1.1 <Envelope> in {SOAP_ENV}",
            reason="soap",
        )
    children = list(root.iterchildren(etree.Element))  # elements only
    if children and children[0].tag == _HEADER:
        _check_headers(children.pop(0))
    if len(children) != 1 or children[0].tag != _BODY:
        raise InvalidContent(
            "SOAP Envelope must hold an optional Header followed by one Body", reason="soap"
        )
    payload = list(children[0].iterchildren(etree.Element))
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
    operation = _OPERATION_OF.get(child.tag)
    if operation is not None:
        return operation, child
    if child.tag == _FAULT:
        raise InvalidContent(
            "SOAP Body holds a Fault, not an operation; read it with parse_fault", reason="fault"
        )
    tag = etree.QName(child)
    raise InvalidContent(
        f"SOAP Body element <{tag.text}> is not a message-exchange operation; expected one of "
        f"{', '.join(op + 'Request' for op in OPERATIONS)} in namespace {SMEV_TYPES}",
        reason="operation",
        element=tag.text,
    )


@dataclass(frozen=True)
class SoapFault:
    """A SOAP 1.1 Fault as a client reads it.

    ``faultcode`` is ``soap:Client`` or ``soap:Server``; ``code`` is the bus's stable
    code, written after the dot (``soap:Client.schema_violation``), None when the fault
    carries none (not the bus's); ``element`` is the named 1.1 fault in the detail;
    ``description`` its ``Description`` (or None).
    """

    faultcode: str
    faultstring: str
    code: str | None
    element: str | None
    description: str | None


def parse_fault(root: etree._Element) -> SoapFault | None:
    """The Fault in a SOAP 1.1 response, or None if the Body holds something else."""
    child = _body(root)
    if child.tag != _FAULT:
        return None
    faultcode = find_text(child, "faultcode")
    if faultcode is None:
        raise InvalidContent("SOAP Fault has no faultcode", reason="fault")
    base, _, code = faultcode.strip().partition(".")
    faultstring = (find_text(child, "faultstring") or "").strip()
    detail = child.find("detail")
    named = next(
        (
            c
            for c in (() if detail is None else detail)
            if isinstance(c.tag, str) and etree.QName(c).namespace == SMEV_FAULTS
        ),
        None,
    )
    description = None if named is None else find_text(named, qname(SMEV_BASIC, "Description"))
    if description is None and code:
        description = faultstring  # a fault element without Description (Void-typed)
    return SoapFault(
        faultcode=base,
        faultstring=faultstring,
        code=code or None,
        element=None if named is None else etree.QName(named).localname,
        description=description,
    )


def signature_target(element: etree._Element) -> etree._Element:
    """The child of a Body element (or of Request/Response) that its signature covers.

    E.g. ``SenderProvidedRequestData`` of ``SendRequestRequest`` (caller's signature),
    ``Request`` of ``RequestMessage`` (SMEVSignature), ``SenderProvidedRequestData`` of
    ``Request`` (SenderInformationSystemSignature). The target carries the ``Id`` the
    XMLDSig Reference points to.
    """
    path = _TARGET_TAGS.get(element.tag)
    if path is None:
        tag = etree.QName(element)
        raise InvalidContent(f"<{tag.text}> is not a signed bus element", reason="structure")
    target = first_child(element, path)  # each path is one child's tag
    if target is not None:
        return target
    name = path.rsplit("}", 1)[-1]  # the local name (URIs hold "/")
    local = etree.QName(element).localname
    raise InvalidContent(f"<{local}> has no <{name}> to sign", reason="structure")


def attach_signature(
    parent: etree._Element,
    signature: etree._Element,
    container: SignatureContainer = "CallerInformationSystemSignature",
) -> etree._Element:
    """Put ``signature`` (a ``ds:Signature``) into ``parent``'s signature container.

    The container is the last child of its parent in every bus element; an existing one
    is replaced. The signature element is moved, not copied. Returns the container.
    """
    if signature.tag != _SIGNATURE:
        raise ValueError(f"expected a ds:Signature element, got <{signature.tag}>")
    tag = _T + container
    for old in list(parent.iterchildren(tag)):  # direct children, without ElementPath
        parent.remove(old)
    holder = etree.SubElement(parent, tag)
    holder.append(signature)
    return holder


def find_signature(
    parent: etree._Element, container: SignatureContainer = "CallerInformationSystemSignature"
) -> etree._Element | None:
    """The ``ds:Signature`` in ``parent``'s container, or None if it is absent."""
    holder = first_child(parent, _T + container)
    if holder is None:
        return None
    return first_child(holder, _SIGNATURE)


def first_child(parent: etree._Element, tag: str) -> etree._Element | None:
    """``parent.find(tag)`` for one Clark-notation tag, without ElementPath (half the time)."""
    for child in parent.iterchildren(tag):
        return child
    return None
