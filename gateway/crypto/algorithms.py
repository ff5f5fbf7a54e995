"""Key signers per signature algorithm: the narrow door under the XMLDSig layer.

A :class:`KeySigner` holds one private key and its certificate and signs bytes; a
:class:`KeyVerifier` holds one certificate's public key and checks bytes. Neither knows
XML: :mod:`gateway.crypto.xmldsig` decides *what* is signed (SignedInfo in exclusive
c14n) and uses these for the key operation only, so a GOST or HSM signer is a new
:class:`SignatureAlgorithm` here, not a second XMLDSig implementation.

Each algorithm is registered under its XMLDSig SignatureMethod URI together with the
DigestMethod (and digest function) its References use:

====================  =================================  ======================
algorithm             SignatureMethod                    DigestMethod
====================  =================================  ======================
RSA PKCS#1 v1.5       ``xmldsig-more#rsa-sha256``        ``xmlenc#sha256``
ECDSA P-256           ``xmldsig-more#ecdsa-sha256``      ``xmlenc#sha256``
GOST R 34.10-2012     ``cpxmlsec:...gostr34102012-...``  ``...gostr34112012-256``
====================  =================================  ======================

Signature bytes are the XMLDSig SignatureValue: for ECDSA the raw ``r || s`` (each
half as long as the curve order, RFC 4050 / XMLDSig 1.1), not the DER that
``cryptography`` speaks; for GOST the ``s || r`` that xmlsec and CryptoPro write
(:mod:`gateway.crypto.gost.keys`).

RSA and ECDSA run on ``cryptography``; GOST on OpenSSL's gost engine
(:mod:`gateway.crypto.gost`), which only has to be installed where GOST keys are used.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Protocol

from cryptography import x509
from cryptography.exceptions import InvalidSignature, UnsupportedAlgorithm
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, padding, rsa
from cryptography.hazmat.primitives.asymmetric.utils import (
    decode_dss_signature,
    encode_dss_signature,
)
from cryptography.hazmat.primitives.serialization import Encoding

from gateway.core.errors import InternalError, SignatureInvalid
from gateway.crypto import gost
from gateway.crypto.certificates import describe

SHA256 = "http://www.w3.org/2001/04/xmlenc#sha256"
RSA_SHA256 = "http://www.w3.org/2001/04/xmldsig-more#rsa-sha256"
ECDSA_SHA256 = "http://www.w3.org/2001/04/xmldsig-more#ecdsa-sha256"
GOST2012_256 = gost.GOST2012_256_SIGNATURE
STREEBOG256 = gost.GOST2012_256_DIGEST

#: SubjectPublicKeyInfo algorithm of a GOST R 34.10-2012 256-bit key.
_GOST2012_256_KEY_OID = "1.2.643.7.1.1.1.1"
#: The Russian arc, under which every GOST algorithm is.
_GOST_ARC = "1.2.643."
_P256_HALF = 32
# The schemes' parameter objects hold no state: made once, not per signature.
_SHA256 = hashes.SHA256()
_PKCS1V15 = padding.PKCS1v15()
_ECDSA_SHA256 = ec.ECDSA(_SHA256)


class KeySigner(Protocol):
    """One private key and its certificate: signs bytes for one SignatureMethod."""

    @property
    def algorithm(self) -> str:
        """The XMLDSig SignatureMethod URI of the signatures this signer makes."""
        ...

    @property
    def certificate(self) -> x509.Certificate: ...

    def sign(self, data: bytes) -> bytes:
        """The SignatureValue bytes over ``data`` (hashing included)."""
        ...


class KeyVerifier(Protocol):
    """One certificate's public key, loaded once, for one SignatureMethod."""

    def verify(self, data: bytes, signature: bytes) -> bool:
        """Whether ``signature`` (SignatureValue bytes) signs ``data``. A malformed
        signature is ``False``, not an exception."""
        ...


@dataclass(frozen=True)
class SignatureAlgorithm:
    """A registered SignatureMethod: its DigestMethod, and how to load keys for it."""

    uri: str
    #: Short name for messages (``RSA-SHA256``).
    name: str
    digest_uri: str
    digest: Callable[[bytes], bytes]
    #: Whether a certificate's subject key is one this algorithm signs with.
    fits: Callable[[x509.Certificate], bool]
    #: The signer for a PEM private key (PKCS#8, or the traditional form ``cryptography``
    #: reads) and its certificate; raises InternalError for unusable key material.
    signer: Callable[[bytes, x509.Certificate], KeySigner]
    #: The verifier for a certificate's key; raises SignatureInvalid when unusable.
    key_verifier: Callable[[x509.Certificate], KeyVerifier]

    def verify(self, data: bytes, signature: bytes, certificate: x509.Certificate) -> bool:
        """Whether ``signature`` signs ``data`` with ``certificate``'s key (one-off; a
        verifier on the hot path keeps :meth:`key_verifier` per certificate)."""
        return self.key_verifier(certificate).verify(data, signature)


# --- RSA and ECDSA (cryptography) ---------------------------------------------------------


def _sha256(data: bytes) -> bytes:
    return hashlib.sha256(data).digest()


def _load_private(key_pem: bytes) -> object:
    try:
        return serialization.load_pem_private_key(key_pem, password=None)
    except (ValueError, TypeError, UnsupportedAlgorithm) as exc:
        raise InternalError(f"cannot load signing key: {exc}") from exc


def _require_pair(
    public: rsa.RSAPublicKey | ec.EllipticCurvePublicKey, cert: x509.Certificate
) -> None:
    fmt = serialization.PublicFormat.SubjectPublicKeyInfo
    mine = public.public_bytes(Encoding.DER, fmt)
    if mine != cert.public_key().public_bytes(Encoding.DER, fmt):
        raise InternalError(
            f"the signing key does not belong to its certificate ({describe(cert)})"
        )


@dataclass(frozen=True)
class _RsaSigner:
    key: rsa.RSAPrivateKey
    certificate: x509.Certificate
    algorithm: str = RSA_SHA256

    def sign(self, data: bytes) -> bytes:
        return self.key.sign(data, _PKCS1V15, _SHA256)


@dataclass(frozen=True)
class _RsaVerifier:
    key: rsa.RSAPublicKey

    def verify(self, data: bytes, signature: bytes) -> bool:
        try:
            self.key.verify(signature, data, _PKCS1V15, _SHA256)
        except InvalidSignature:
            return False
        return True


def _rsa_fits(cert: x509.Certificate) -> bool:
    return isinstance(_public_key(cert), rsa.RSAPublicKey)


def _rsa_signer(key_pem: bytes, cert: x509.Certificate) -> KeySigner:
    key = _load_private(key_pem)
    if not isinstance(key, rsa.RSAPrivateKey):
        raise InternalError(f"the signing key is not an RSA key ({describe(cert)})")
    _require_pair(key.public_key(), cert)
    return _RsaSigner(key, cert)


def _rsa_verifier(cert: x509.Certificate) -> KeyVerifier:
    key = _public_key(cert)
    if not isinstance(key, rsa.RSAPublicKey):
        raise SignatureInvalid(f"the certificate's key is not an RSA key ({describe(cert)})")
    return _RsaVerifier(key)


@dataclass(frozen=True)
class _EcdsaSigner:
    key: ec.EllipticCurvePrivateKey
    certificate: x509.Certificate
    algorithm: str = ECDSA_SHA256

    def sign(self, data: bytes) -> bytes:
        r, s = decode_dss_signature(self.key.sign(data, _ECDSA_SHA256))
        return r.to_bytes(_P256_HALF, "big") + s.to_bytes(_P256_HALF, "big")


@dataclass(frozen=True)
class _EcdsaVerifier:
    key: ec.EllipticCurvePublicKey

    def verify(self, data: bytes, signature: bytes) -> bool:
        if len(signature) != 2 * _P256_HALF:
            return False
        r = int.from_bytes(signature[:_P256_HALF], "big")
        s = int.from_bytes(signature[_P256_HALF:], "big")
        try:
            self.key.verify(encode_dss_signature(r, s), data, _ECDSA_SHA256)
        except InvalidSignature:
            return False
        return True


def _p256(key: object) -> bool:
    return isinstance(key, ec.EllipticCurvePublicKey | ec.EllipticCurvePrivateKey) and isinstance(
        key.curve, ec.SECP256R1
    )


def _ecdsa_fits(cert: x509.Certificate) -> bool:
    return _p256(_public_key(cert))


def _ecdsa_signer(key_pem: bytes, cert: x509.Certificate) -> KeySigner:
    key = _load_private(key_pem)
    if not isinstance(key, ec.EllipticCurvePrivateKey) or not _p256(key):
        raise InternalError(f"the signing key is not an EC P-256 key ({describe(cert)})")
    _require_pair(key.public_key(), cert)
    return _EcdsaSigner(key, cert)


def _ecdsa_verifier(cert: x509.Certificate) -> KeyVerifier:
    key = _public_key(cert)
    if not isinstance(key, ec.EllipticCurvePublicKey) or not _p256(key):
        raise SignatureInvalid(f"the certificate's key is not an EC P-256 key ({describe(cert)})")
    return _EcdsaVerifier(key)


def _public_key(cert: x509.Certificate) -> object:
    """The certificate's public key; None for a GOST key, which ``cryptography`` does not
    know. Any other key it cannot read (an unknown curve, a bad point) raises ValueError
    or UnsupportedAlgorithm: the certificate is not usable."""
    if cert.public_key_algorithm_oid.dotted_string.startswith(_GOST_ARC):
        return None
    return cert.public_key()


# --- GOST R 34.10-2012 256 (OpenSSL's gost engine) -----------------------------------------


@dataclass(frozen=True)
class _GostSigner:
    key: gost.GostPrivateKey
    certificate: x509.Certificate
    algorithm: str = GOST2012_256

    def sign(self, data: bytes) -> bytes:
        return self.key.sign(data)


def _gost_fits(cert: x509.Certificate) -> bool:
    return cert.public_key_algorithm_oid.dotted_string == _GOST2012_256_KEY_OID


def _gost_signer(key_pem: bytes, cert: x509.Certificate) -> KeySigner:
    try:
        key = gost.GostPrivateKey.from_pem(key_pem)
        public = gost.GostPublicKey.from_certificate(cert.public_bytes(Encoding.DER))
    except (gost.GostError, gost.GostUnavailable) as exc:
        raise InternalError(f"cannot load GOST signing key: {exc}") from exc
    if key.public_key().der() != public.der():
        raise InternalError(
            f"the signing key does not belong to its certificate ({describe(cert)})"
        )
    return _GostSigner(key, cert)


def _gost_verifier(cert: x509.Certificate) -> KeyVerifier:
    try:
        return gost.GostPublicKey.from_certificate(cert.public_bytes(Encoding.DER))
    except gost.GostUnavailable as exc:
        raise SignatureInvalid(
            f"GOST R 34.10-2012 signatures cannot be checked on this bus: {exc}",
            reason="algorithm_unavailable",
        ) from exc
    except gost.GostError as exc:
        raise SignatureInvalid(f"the certificate's GOST key is unusable: {exc}") from exc


def _streebog256(data: bytes) -> bytes:
    return gost.streebog256(data)


# --- the registry ---------------------------------------------------------------------------

RSA_SHA256_ALGORITHM = SignatureAlgorithm(
    uri=RSA_SHA256,
    name="RSA-SHA256",
    digest_uri=SHA256,
    digest=_sha256,
    fits=_rsa_fits,
    signer=_rsa_signer,
    key_verifier=_rsa_verifier,
)
ECDSA_SHA256_ALGORITHM = SignatureAlgorithm(
    uri=ECDSA_SHA256,
    name="ECDSA-P256-SHA256",
    digest_uri=SHA256,
    digest=_sha256,
    fits=_ecdsa_fits,
    signer=_ecdsa_signer,
    key_verifier=_ecdsa_verifier,
)
GOST2012_256_ALGORITHM = SignatureAlgorithm(
    uri=GOST2012_256,
    name="GOST-R-34.10-2012-256",
    digest_uri=STREEBOG256,
    digest=_streebog256,
    fits=_gost_fits,
    signer=_gost_signer,
    key_verifier=_gost_verifier,
)

#: Every SignatureMethod the bus signs and verifies with, by URI.
ALGORITHMS: Mapping[str, SignatureAlgorithm] = {
    a.uri: a for a in (RSA_SHA256_ALGORITHM, ECDSA_SHA256_ALGORITHM, GOST2012_256_ALGORITHM)
}


def algorithm_for(
    cert: x509.Certificate, algorithms: Mapping[str, SignatureAlgorithm] = ALGORITHMS
) -> SignatureAlgorithm:
    """The algorithm that signs with ``cert``'s key; SignatureInvalid if none does."""
    for algorithm in algorithms.values():
        if algorithm.fits(cert):
            return algorithm
    names = ", ".join(a.name for a in algorithms.values())
    raise SignatureInvalid(
        f"unsupported signer key {cert.public_key_algorithm_oid.dotted_string}; "
        f"use one of {names} ({describe(cert)})"
    )


def load_key_signer(key_pem: bytes, cert_pem: bytes) -> KeySigner:
    """The signer for a PEM private key and its PEM certificate, by the certificate's key."""
    try:
        cert = x509.load_pem_x509_certificate(cert_pem)
    except ValueError as exc:
        raise InternalError(f"cannot load the signing certificate: {exc}") from exc
    try:
        algorithm = algorithm_for(cert)
    except SignatureInvalid as exc:
        raise InternalError(exc.message) from None
    return algorithm.signer(key_pem, cert)
