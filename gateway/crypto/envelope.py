"""Signing and checking the signed parts of bus SOAP Body elements.

Each signed Body element has one target child carrying an ``Id``
(:func:`gateway.xml.soap.signature_target`) and a signature container as its last
child. These two functions are the only place the router and clients join the XML
layout to the :class:`Signer` / :class:`Verifier` protocols.
"""

from __future__ import annotations

from cryptography import x509
from lxml import etree

from gateway.core.errors import SignatureInvalid
from gateway.crypto.signer import Signer, Verifier
from gateway.xml.namespaces import SMEV_TYPES, qname
from gateway.xml.soap import SignatureContainer, find_signature, signature_target


def sign_element(
    element: etree._Element,
    signer: Signer,
    container: SignatureContainer = "CallerInformationSystemSignature",
) -> etree._Element:
    """Sign ``element``'s target in place; returns ``element``."""
    target = signature_target(element)
    for old in element.findall(qname(SMEV_TYPES, container)):
        element.remove(old)
    holder = etree.SubElement(element, qname(SMEV_TYPES, container))
    signer.sign(target, holder)
    return element


def verify_element(
    element: etree._Element,
    verifier: Verifier,
    container: SignatureContainer = "CallerInformationSystemSignature",
) -> x509.Certificate:
    """Verify the signature in ``element``'s container over exactly its target."""
    signature = find_signature(element, container)
    if signature is None:
        raise SignatureInvalid(
            f"<{etree.QName(element).localname}> is not signed: put an XMLDSig signature over "
            f"its <{etree.QName(signature_target(element)).localname}> into <{container}>",
            reason="missing",
        )
    return verifier.verify(signature_target(element), signature)
