"""Whole-document signing and checking, for integrators debugging signatures (CLI)."""

from __future__ import annotations

from cryptography.exceptions import UnsupportedAlgorithm
from cryptography.x509 import InvalidVersion
from lxml import etree

from gateway.core.errors import InvalidContent, SignatureInvalid
from gateway.crypto.certificates import describe
from gateway.crypto.envelope import sign_element
from gateway.crypto.profiles import DS_NS, SignatureProfile
from gateway.crypto.xmldsig import XmlSigner, XmlVerifier
from gateway.xml.namespaces import SOAP_ENV, qname
from gateway.xml.parse import parse_secure
from gateway.xml.soap import unwrap_envelope


def sign_document(data: bytes, key_pem: bytes, cert_pem: bytes, profile: SignatureProfile) -> bytes:
    """Sign the bus element of ``data`` (a SOAP envelope or the bare Body element)."""
    root = parse_secure(data)
    element = unwrap_envelope(root)[1] if root.tag == qname(SOAP_ENV, "Envelope") else root
    sign_element(element, XmlSigner.from_pem(key_pem, cert_pem, profile))
    return etree.tostring(root, xml_declaration=True, encoding="UTF-8")


def verify_document(data: bytes, verifier: XmlVerifier) -> list[tuple[str, str]]:
    """Verify every ds:Signature in ``data``; ``[(signed element, signer)]`` or raise."""
    root = parse_secure(data)
    signatures = list(root.iter(qname(DS_NS, "Signature")))
    if not signatures:
        raise SignatureInvalid("the document holds no ds:Signature", reason="missing")
    results = []
    for signature in signatures:
        reference = signature.find(f"{{{DS_NS}}}SignedInfo/{{{DS_NS}}}Reference")
        uri = "" if reference is None else reference.get("URI") or ""
        if not uri.startswith("#"):
            raise SignatureInvalid(f"signature has no same-document Reference (URI={uri!r})")
        targets = root.xpath("//*[@Id=$id]", id=uri[1:])
        if not isinstance(targets, list) or len(targets) != 1:
            raise InvalidContent(f"Id {uri[1:]!r} must name exactly one element")
        target = targets[0]
        assert isinstance(target, etree._Element)
        try:
            cert = verifier.verify(target, signature)
            signer = describe(cert)
        except (ValueError, TypeError, UnsupportedAlgorithm, InvalidVersion) as exc:
            # A damaged X509Certificate fails lazily, on first use of its parts.
            raise SignatureInvalid(
                f"X509Certificate in KeyInfo is not a usable certificate: {exc}"
            ) from None
        results.append((f"<{etree.QName(target).localname} Id={uri[1:]!r}>", signer))
    return results
