"""Signing for zeep: talk to ``/ws`` with a plain zeep client built from the WSDL.

An integrator's SMEV 3 client usually is zeep (or a Java stack) plus a signing hook.
:class:`SigningPlugin` is that hook: on the way out it signs the operation's signed
part (``SenderProvidedRequestData``, ``MessageTypeSelector``, ...) with the
participant's key; on the way in it checks the bus's ``SMEVSignature`` where there
is one. Usage::

    client = zeep.Client(f"{base}/ws?wsdl", plugins=[SigningPlugin(signer, verifier)])
    client.service.SendRequest(SenderProvidedRequestData={...})
"""

from __future__ import annotations

from typing import Any

from lxml import etree
from zeep import Plugin

from gateway.crypto.envelope import sign_element, verify_element
from gateway.crypto.xmldsig import XmlSigner, XmlVerifier
from gateway.xml.namespaces import SOAP_ENV, qname


class SigningPlugin(Plugin):
    def __init__(self, signer: XmlSigner, verifier: XmlVerifier | None = None) -> None:
        self.signer = signer
        self.verifier = verifier

    def egress(
        self,
        envelope: etree._Element,
        http_headers: dict[str, str],
        operation: Any,
        binding_options: Any,
    ) -> tuple[etree._Element, dict[str, str]]:
        body = envelope.find(qname(SOAP_ENV, "Body"))
        if body is not None and len(body):
            sign_element(body[0], self.signer)
        return envelope, http_headers

    def ingress(
        self, envelope: etree._Element, http_headers: dict[str, str], operation: Any
    ) -> tuple[etree._Element, dict[str, str]]:
        body = envelope.find(qname(SOAP_ENV, "Body"))
        reply = body[0] if body is not None and len(body) else None
        signed = None if reply is None else _bus_signed(reply)
        if self.verifier is not None and signed is not None:
            verify_element(signed, self.verifier, "SMEVSignature")
        return envelope, http_headers


#: Where 1.1 puts the bus's signature in a delivery: inside these, not beside them.
_SIGNED_HOLDERS = ("RequestMessage", "ResponseMessage", "SmevAsyncProcessingMessage")


def _bus_signed(reply: etree._Element) -> etree._Element | None:
    """The element of ``reply`` holding an SMEVSignature (the reply or a delivery in it)."""
    for element in (reply, *(c for c in reply if etree.QName(c).localname in _SIGNED_HOLDERS)):
        if any(etree.QName(child).localname == "SMEVSignature" for child in element):
            return element
    return None
