"""GOST R 34.10-2012 (256-bit) keys, signatures and Streebog-256 over the gost engine.

Byte layout (what OpenSSL's gost engine and xmlsec write, and what XMLDSig's
``gostr34102012-gostr34112012-256`` SignatureValue carries):

* a signature is 64 bytes, ``s || r``, each half a big-endian 32-byte integer;
* the signer reads the 32-byte Streebog-256 digest as a *little-endian* integer;
* the public key in a certificate (SubjectPublicKeyInfo) is an OCTET STRING of 64
  bytes, ``x || y``, each half *little-endian*.

An implementation that reads the digest big-endian and writes ``r || s`` (the
``gostcrypto`` package does) agrees after reversing the digest bytes, swapping the
two signature halves and reversing each public key half; the tests check exactly that.

Thread safety: a :class:`GostPrivateKey` or :class:`GostPublicKey` may be shared by
threads. Each call makes its own ``EVP_PKEY_CTX``; the key itself is only read, as
OpenSSL allows for an ``EVP_PKEY`` after it is built.
"""

from __future__ import annotations

import ctypes
import weakref
from enum import StrEnum

from gateway.crypto.gost.libcrypto import (
    Backend,
    GostError,
    backend,
    check_ok,
    check_ptr,
    clear_errors,
    der_of,
    from_der,
    pem_of,
    to_der,
)

DIGEST_SIZE = 32
SIGNATURE_SIZE = 64


class Curve(StrEnum):
    """256-bit parameter sets offered for new keys."""

    #: id-GostR3410-2001-CryptoPro-A-ParamSet (1.2.643.2.2.35.1), the default: the same
    #: curve as id-tc26-gost-3410-2012-256-paramSetB, in use since GOST R 34.10-2001 and
    #: so understood by old and new verifiers alike; libxmlsec1's GOST 2012-256 test
    #: certificate uses it.
    CRYPTOPRO_A = "cryptopro-a"
    #: id-tc26-gost-3410-2012-256-paramSetA (1.2.643.7.1.2.1.1.1), the TC26 twisted
    #: Edwards curve of R 1323565.1.024-2019.
    TC26_A = "tc26-a"

    @property
    def engine_paramset(self) -> bytes:
        return {Curve.CRYPTOPRO_A: b"A", Curve.TC26_A: b"TCA"}[self]


def streebog256(data: bytes) -> bytes:
    """GOST R 34.11-2012 hash, 256-bit output (the XMLDSig DigestValue bytes)."""
    b = backend()
    out = ctypes.create_string_buffer(64)
    size = ctypes.c_uint(0)
    check_ok(
        b,
        b.lib.EVP_Digest(data, len(data), out, ctypes.byref(size), b.streebog256, None),
        "Streebog-256",
    )
    return out.raw[: size.value]


class _Pkey:
    """Owns one ``EVP_PKEY`` of type GOST R 34.10-2012 256; freed with the object.

    ``evp_pkey`` is the ``EVP_PKEY *`` for libcrypto calls in this package.
    """

    def __init__(self, b: Backend, pkey: int) -> None:
        weakref.finalize(self, b.lib.EVP_PKEY_free, pkey)
        if b.lib.EVP_PKEY_get_base_id(pkey) != b.key_nid:
            raise GostError("the key is not a GOST R 34.10-2012 256-bit key")
        self._b = b
        self.evp_pkey = pkey

    def _ctx(self, init: str) -> int:
        b = self._b
        ctx = check_ptr(b, b.lib.EVP_PKEY_CTX_new(self.evp_pkey, None), "EVP_PKEY_CTX_new")
        try:
            check_ok(b, getattr(b.lib, init)(ctx), init)
        except GostError:
            b.lib.EVP_PKEY_CTX_free(ctx)
            raise
        return ctx


class GostPublicKey(_Pkey):
    """A GOST R 34.10-2012 256-bit public key: verifies signatures.

    Loading from a certificate parses it; a verifier on the hot path keeps the
    ``GostPublicKey`` per certificate rather than calling :func:`verify` each time.
    """

    @classmethod
    def from_der(cls, spki: bytes) -> GostPublicKey:
        """From a DER SubjectPublicKeyInfo."""
        b = backend()
        return cls(b, from_der(b, b.lib.d2i_PUBKEY, b.lib.EVP_PKEY_free, spki, "GOST public key"))

    @classmethod
    def from_certificate(cls, certificate: bytes) -> GostPublicKey:
        """The subject key of an X.509 certificate (DER or PEM)."""
        b = backend()
        der = der_of(certificate, "CERTIFICATE")
        x509 = from_der(b, b.lib.d2i_X509, b.lib.X509_free, der, "X.509 certificate")
        try:
            pkey = check_ptr(b, b.lib.X509_get_pubkey(x509), "reading the certificate's key")
        finally:
            b.lib.X509_free(x509)
        return cls(b, pkey)

    def der(self) -> bytes:
        """DER SubjectPublicKeyInfo (algorithm, parameter set, the 64-byte point)."""
        return to_der(self._b, self._b.lib.i2d_PUBKEY, self.evp_pkey, "public key")

    def verify(self, data: bytes, signature: bytes) -> bool:
        """Whether ``signature`` (``s || r``) signs Streebog-256 of ``data``."""
        return self.verify_digest(streebog256(data), signature)

    def verify_digest(self, digest: bytes, signature: bytes) -> bool:
        if len(digest) != DIGEST_SIZE:
            raise GostError(f"a Streebog-256 digest is {DIGEST_SIZE} bytes, not {len(digest)}")
        if len(signature) != SIGNATURE_SIZE:
            return False
        b = self._b
        ctx = self._ctx("EVP_PKEY_verify_init")
        try:
            result = b.lib.EVP_PKEY_verify(ctx, signature, len(signature), digest, len(digest))
        finally:
            b.lib.EVP_PKEY_CTX_free(ctx)
        if result != 1:
            clear_errors(b)  # 0 is "does not verify"; <0 a malformed signature: both False
        return bool(result == 1)


class GostPrivateKey(_Pkey):
    """A GOST R 34.10-2012 256-bit private key: signs."""

    @classmethod
    def generate(cls, curve: Curve = Curve.CRYPTOPRO_A) -> GostPrivateKey:
        b = backend()
        ctx = check_ptr(b, b.lib.EVP_PKEY_CTX_new_id(b.key_nid, b.engine), "EVP_PKEY_CTX_new_id")
        try:
            check_ok(b, b.lib.EVP_PKEY_keygen_init(ctx), "EVP_PKEY_keygen_init")
            check_ok(
                b,
                b.lib.EVP_PKEY_CTX_ctrl_str(ctx, b"paramset", curve.engine_paramset),
                f"choosing the {curve} parameter set",
            )
            out = ctypes.c_void_p(None)
            check_ok(b, b.lib.EVP_PKEY_keygen(ctx, ctypes.byref(out)), "EVP_PKEY_keygen")
        finally:
            b.lib.EVP_PKEY_CTX_free(ctx)
        return cls(b, check_ptr(b, out.value, "EVP_PKEY_keygen"))

    @classmethod
    def from_pem(cls, pem: bytes) -> GostPrivateKey:
        """From an unencrypted PKCS#8 key (PEM ``PRIVATE KEY`` or DER)."""
        b = backend()
        der = der_of(pem, "PRIVATE KEY")
        p8 = from_der(
            b,
            b.lib.d2i_PKCS8_PRIV_KEY_INFO,
            b.lib.PKCS8_PRIV_KEY_INFO_free,
            der,
            "PKCS#8 private key",
        )
        try:
            pkey = check_ptr(b, b.lib.EVP_PKCS82PKEY(p8), "reading the PKCS#8 private key")
        finally:
            b.lib.PKCS8_PRIV_KEY_INFO_free(p8)
        return cls(b, pkey)

    def pem(self) -> bytes:
        """Unencrypted PKCS#8 PEM (``-----BEGIN PRIVATE KEY-----``)."""
        b = self._b
        p8 = check_ptr(b, b.lib.EVP_PKEY2PKCS8(self.evp_pkey), "EVP_PKEY2PKCS8")
        try:
            der = to_der(b, b.lib.i2d_PKCS8_PRIV_KEY_INFO, p8, "PKCS#8 private key")
        finally:
            b.lib.PKCS8_PRIV_KEY_INFO_free(p8)
        return pem_of(der, "PRIVATE KEY")

    def public_key(self) -> GostPublicKey:
        return GostPublicKey.from_der(
            to_der(self._b, self._b.lib.i2d_PUBKEY, self.evp_pkey, "public key")
        )

    def sign(self, data: bytes) -> bytes:
        """The 64-byte XMLDSig SignatureValue (``s || r``) over Streebog-256 of ``data``."""
        return self.sign_digest(streebog256(data))

    def sign_digest(self, digest: bytes) -> bytes:
        if len(digest) != DIGEST_SIZE:
            raise GostError(f"a Streebog-256 digest is {DIGEST_SIZE} bytes, not {len(digest)}")
        b = self._b
        ctx = self._ctx("EVP_PKEY_sign_init")
        out = ctypes.create_string_buffer(SIGNATURE_SIZE)
        size = ctypes.c_size_t(len(out))
        try:
            check_ok(
                b, b.lib.EVP_PKEY_sign(ctx, out, ctypes.byref(size), digest, len(digest)), "signing"
            )
        finally:
            b.lib.EVP_PKEY_CTX_free(ctx)
        if size.value != SIGNATURE_SIZE:
            raise GostError(f"the gost engine returned a {size.value}-byte signature")
        return out.raw


def generate_key(curve: Curve = Curve.CRYPTOPRO_A) -> GostPrivateKey:
    """A new key; ``.pem()`` gives its PKCS#8 PEM."""
    return GostPrivateKey.generate(curve)


def verify(certificate: bytes, data: bytes, signature: bytes) -> bool:
    """Whether ``signature`` signs ``data`` with the key of ``certificate`` (DER or PEM)."""
    return GostPublicKey.from_certificate(certificate).verify(data, signature)


def verify_certificate_signature(certificate: bytes, issuer_certificate: bytes) -> bool:
    """Whether ``certificate`` is signed with the GOST key of ``issuer_certificate``.

    Only the signature: names, validity, extensions and revocation are the trust
    store's business. Both arguments DER or PEM.
    """
    issuer = GostPublicKey.from_certificate(issuer_certificate)
    b = backend()
    x509 = from_der(
        b, b.lib.d2i_X509, b.lib.X509_free, der_of(certificate, "CERTIFICATE"), "X.509 certificate"
    )
    try:
        result = b.lib.X509_verify(x509, issuer.evp_pkey)
    finally:
        b.lib.X509_free(x509)
    clear_errors(b)
    return bool(result == 1)


def verify_crl_signature(crl: bytes, issuer_certificate: bytes) -> bool:
    """Whether ``crl`` (DER or PEM) is signed with the GOST key of ``issuer_certificate``."""
    issuer = GostPublicKey.from_certificate(issuer_certificate)
    b = backend()
    x509_crl = from_der(
        b, b.lib.d2i_X509_CRL, b.lib.X509_CRL_free, der_of(crl, "X509 CRL"), "X.509 CRL"
    )
    try:
        result = b.lib.X509_CRL_verify(x509_crl, issuer.evp_pkey)
    finally:
        b.lib.X509_CRL_free(x509_crl)
    clear_errors(b)
    return bool(result == 1)
