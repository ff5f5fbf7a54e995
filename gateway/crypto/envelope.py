"""Signing and checking the signed parts of bus SOAP Body elements.

Each signed Body element has one target child carrying an ``Id``
(:func:`gateway.xml.soap.signature_target`) and a signature container as its last
child. These two functions are the only place the router and clients join the XML
layout to the XMLDSig layer (:class:`XmlSigner` / :class:`XmlVerifier`).
"""

from __future__ import annotations

from cryptography import x509
from lxml import etree

from gateway.core.errors import SignatureInvalid
from gateway.crypto.profiles import DS_NS
from gateway.crypto.xmldsig import XmlSigner, XmlVerifier
from gateway.xml.namespaces import SMEV_TYPES
from gateway.xml.soap import SignatureContainer, find_signature, first_child, signature_target


def sign_element(
    element: etree._Element,
    signer: XmlSigner,
    container: SignatureContainer = "CallerInformationSystemSignature",
) -> etree._Element:
    """Sign ``element``'s target in place; returns ``element``."""
    target = signature_target(element)
    tag = f"{{{SMEV_TYPES}}}{container}"
    # The containers already there (direct children; iterchildren, not ElementPath)
    for old in list(element.iterchildren(tag)):
        element.remove(old)
    holder = etree.SubElement(element, tag)
    signer.sign(target, holder)
    return element


def verify_element(
    element: etree._Element,
    verifier: XmlVerifier,
    container: SignatureContainer = "CallerInformationSystemSignature",
    *,
    target: etree._Element | None = None,
) -> x509.Certificate:
    """Verify the signature in ``element``'s container over exactly its target
    (``target``: that target, when the caller has looked it up already)."""
    if target is None:
        target = signature_target(element)
    signature = find_signature(element, container)
    if signature is None:
        raise SignatureInvalid(
            f"<{etree.QName(element).localname}> is not signed: put an XMLDSig signature over "
            f"its <{etree.QName(target).localname}> into <{container}>",
            reason="missing",
        )
    return verifier.verify(target, signature)


def signed_bytes(
    element: etree._Element, container: SignatureContainer = "CallerInformationSystemSignature"
) -> bytes:
    """What the (verified) signature in ``element``'s container signs: its ds:SignedInfo in
    exclusive c14n, which holds the digest of the signed part.

    The same for every copy of one signing act however it is re-serialized, and for a
    SignatureValue changed into another valid one (an ECDSA signature ``(r, s)`` also
    verifies as ``(r, n - s)``); different for whatever is signed anew. So it, not the
    SignatureValue, identifies a signed request for the replay guard.
    """
    signature = find_signature(element, container)
    signed_info = None if signature is None else first_child(signature, f"{{{DS_NS}}}SignedInfo")
    if signed_info is None:
        raise SignatureInvalid(f"<{container}> holds no ds:Signature/ds:SignedInfo")
    return etree.tostring(signed_info, method="c14n", exclusive=True)
