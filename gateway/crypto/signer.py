"""What the rest of the bus sees of signing: two narrow protocols and the profiles.

As in X-Road, callers never touch keys or XMLDSig details: a :class:`Signer`
signs one element by reference, a :class:`Verifier` checks one signature over one
element it is handed (never an element it looks up itself, which is what makes
signature wrapping fail).
"""

from __future__ import annotations

from enum import StrEnum
from typing import Protocol

from cryptography import x509
from lxml import etree

DS_NS = "http://www.w3.org/2000/09/xmldsig#"
EXC_C14N = "http://www.w3.org/2001/10/xml-exc-c14n#"
SMEV_TRANSFORM = "urn://smev-gov-ru/xmldsig/transform"
SHA256 = "http://www.w3.org/2001/04/xmlenc#sha256"
RSA_SHA256 = "http://www.w3.org/2001/04/xmldsig-more#rsa-sha256"
ECDSA_SHA256 = "http://www.w3.org/2001/04/xmldsig-more#ecdsa-sha256"


class SignatureProfile(StrEnum):
    """Which transforms a Reference applies before digesting."""

    #: exclusive c14n only; any XMLDSig tool can check it
    EXC_C14N = "exc-c14n"
    #: exclusive c14n then the SMEV transform, as SMEV 3 requires
    SMEV = "smev"

    @property
    def transforms(self) -> tuple[str, ...]:
        if self is SignatureProfile.SMEV:
            return (EXC_C14N, SMEV_TRANSFORM)
        return (EXC_C14N,)

    @classmethod
    def from_transforms(cls, transforms: tuple[str, ...]) -> SignatureProfile | None:
        for profile in cls:
            if profile.transforms == transforms:
                return profile
        return None


class Signer(Protocol):
    @property
    def certificate(self) -> x509.Certificate: ...

    def sign(self, target: etree._Element, into: etree._Element) -> etree._Element:
        """Sign ``target`` by reference to its ``Id`` and append the ds:Signature to ``into``.

        ``target`` must carry an ``Id`` attribute; ``into`` is a container elsewhere in
        the same document (e.g. ``CallerInformationSystemSignature``). Returns the
        ds:Signature element.
        """
        ...


class Verifier(Protocol):
    def verify(self, target: etree._Element, signature: etree._Element) -> x509.Certificate:
        """Check that ``signature`` signs exactly ``target`` and that its signer is trusted.

        Returns the signer's certificate. Raises SignatureInvalid, CertificateUntrusted
        or CertificateExpired.
        """
        ...
