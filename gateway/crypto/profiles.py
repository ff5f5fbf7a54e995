"""XMLDSig vocabulary of the bus: namespace, transforms, and the two signature profiles.

The algorithms (SignatureMethod, DigestMethod) are in :mod:`gateway.crypto.algorithms`;
the XMLDSig layer that uses both is :mod:`gateway.crypto.xmldsig`.
"""

from __future__ import annotations

from enum import StrEnum

DS_NS = "http://www.w3.org/2000/09/xmldsig#"
EXC_C14N = "http://www.w3.org/2001/10/xml-exc-c14n#"
SMEV_TRANSFORM = "urn://smev-gov-ru/xmldsig/transform"


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
        # A look-up in a table made once: iterating the enum is a generator each time.
        return _BY_TRANSFORMS.get(transforms)


#: Each profile by its transforms.
_BY_TRANSFORMS = {profile.transforms: profile for profile in SignatureProfile}
