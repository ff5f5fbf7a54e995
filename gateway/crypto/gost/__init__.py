"""GOST R 34.10-2012 (256-bit) signatures and GOST R 34.11-2012 (Streebog-256) digests.

The backend is OpenSSL's gost engine in the system libcrypto, bound with ctypes
(:mod:`.libcrypto`); keys, signing and verification are in :mod:`.keys`, GOST-signed
certificates and CRLs for a dev PKI in :mod:`.pki`. Everything raises
:class:`GostUnavailable` when the engine is not installed (Debian package
``libengine-gost-openssl``) and :class:`GostError` on malformed input; a signature
that does not verify is ``False``, not an exception.
"""

from gateway.crypto.gost.keys import (
    DIGEST_SIZE,
    SIGNATURE_SIZE,
    Curve,
    GostPrivateKey,
    GostPublicKey,
    generate_key,
    streebog256,
    verify,
    verify_certificate_signature,
    verify_crl_signature,
)
from gateway.crypto.gost.libcrypto import GostError, GostUnavailable, backend

#: XMLDSig SignatureMethod: GOST R 34.10-2012 256-bit over Streebog-256 (the URN xmlsec
#: and SMEV 3 use).
GOST2012_256_SIGNATURE = (
    "urn:ietf:params:xml:ns:cpxmlsec:algorithms:gostr34102012-gostr34112012-256"
)
#: XMLDSig DigestMethod: Streebog-256.
GOST2012_256_DIGEST = "urn:ietf:params:xml:ns:cpxmlsec:algorithms:gostr34112012-256"


def available() -> bool:
    """Whether the gost engine loads on this host (see :func:`unavailable_reason`)."""
    return unavailable_reason() is None


def unavailable_reason() -> str | None:
    """Why GOST is unavailable, or None when it works."""
    try:
        backend()
    except GostUnavailable as exc:
        return str(exc)
    return None


__all__ = [
    "DIGEST_SIZE",
    "GOST2012_256_DIGEST",
    "GOST2012_256_SIGNATURE",
    "SIGNATURE_SIZE",
    "Curve",
    "GostError",
    "GostPrivateKey",
    "GostPublicKey",
    "GostUnavailable",
    "available",
    "generate_key",
    "streebog256",
    "unavailable_reason",
    "verify",
    "verify_certificate_signature",
    "verify_crl_signature",
]
