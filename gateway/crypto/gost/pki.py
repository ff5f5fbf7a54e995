"""GOST-signed X.509 certificates and CRLs for a development PKI.

Certificates are built with libcrypto's X509 API and signed with GOST R 34.10-2012
over Streebog-256 (signature algorithm 1.2.643.7.1.1.3.2). The extensions match the
RSA/ECDSA dev PKI of :mod:`gateway.crypto.devpki`: a CA with critical
BasicConstraints CA:TRUE, pathlen 0 and KeyUsage keyCertSign, cRLSign; participant
certificates with CN = mnemonic, critical BasicConstraints CA:FALSE, KeyUsage
digitalSignature, nonRepudiation, ExtendedKeyUsage clientAuth, and key identifiers.
Dates and serials are the caller's (no clock here). Output is PEM.

The resulting certificates parse in ``cryptography`` (subject, validity, serial,
extensions); only their ``public_key()`` is unsupported there.
"""

from __future__ import annotations

import ctypes
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from datetime import datetime

from gateway.crypto.gost.keys import GostPrivateKey, GostPublicKey
from gateway.crypto.gost.libcrypto import (
    Backend,
    GostError,
    backend,
    check_ok,
    check_ptr,
    der_of,
    from_der,
    pem_of,
    to_der,
)

_MBSTRING_UTF8 = 0x1000
_X509_VERSION_3 = 2
_X509_CRL_VERSION_2 = 1
_X509V3_CTX_SIZE = 256  # opaque struct X509V3_CTX (64 bytes in OpenSSL 3.0), with room

CA_EXTENSIONS = (
    ("basicConstraints", "critical,CA:TRUE,pathlen:0"),
    ("keyUsage", "critical,keyCertSign,cRLSign"),
    ("subjectKeyIdentifier", "hash"),
)
PARTICIPANT_EXTENSIONS = (
    ("basicConstraints", "critical,CA:FALSE"),
    ("keyUsage", "critical,digitalSignature,nonRepudiation"),
    ("extendedKeyUsage", "clientAuth"),
    ("subjectKeyIdentifier", "hash"),
    ("authorityKeyIdentifier", "keyid:always"),
)


def self_signed_ca(
    key: GostPrivateKey, common_name: str, *, serial: int, not_before: datetime, not_after: datetime
) -> bytes:
    """A self-signed CA certificate for ``key`` (PEM)."""
    b = backend()
    with _owned(b, b.lib.X509_new(), b.lib.X509_free, "X509_new") as cert:
        public = key.public_key()
        name = _set_common_fields(
            b, cert, common_name, None, public.evp_pkey, serial, not_before, not_after
        )
        check_ok(b, b.lib.X509_set_issuer_name(cert, name), "X509_set_issuer_name")
        _add_extensions(b, cert, cert, CA_EXTENSIONS)
        return _sign_certificate(b, cert, key)


def issue_certificate(
    ca_key: GostPrivateKey,
    ca_certificate: bytes,
    subject_key: GostPublicKey | bytes,
    common_name: str,
    *,
    organization: str | None = None,
    serial: int,
    not_before: datetime,
    not_after: datetime,
) -> bytes:
    """A participant certificate (CN = ``common_name``, O = ``organization``) issued by
    the CA (``ca_certificate`` DER or PEM, signed with ``ca_key``), as PEM.

    ``subject_key`` is a GOST key, or the DER SubjectPublicKeyInfo of any key libcrypto
    reads (an EC or RSA participant certified by a GOST CA, in a mixed registry).
    """
    b = backend()
    with (
        _x509(b, ca_certificate) as ca,
        _owned(b, b.lib.X509_new(), b.lib.X509_free, "X509_new") as cert,
        _subject_pkey(b, subject_key) as pkey,
    ):
        _set_common_fields(b, cert, common_name, organization, pkey, serial, not_before, not_after)
        issuer = check_ptr(b, b.lib.X509_get_subject_name(ca), "X509_get_subject_name")
        check_ok(b, b.lib.X509_set_issuer_name(cert, issuer), "X509_set_issuer_name")
        _add_extensions(b, cert, ca, PARTICIPANT_EXTENSIONS)
        return _sign_certificate(b, cert, ca_key)


def make_crl(
    ca_key: GostPrivateKey,
    ca_certificate: bytes,
    *,
    revoked: Mapping[int, datetime],
    last_update: datetime,
    next_update: datetime,
) -> bytes:
    """A v2 CRL from the CA listing ``revoked`` (serial -> revocation date), as PEM."""
    b = backend()
    lib = b.lib
    with (
        _x509(b, ca_certificate) as ca,
        _owned(b, lib.X509_CRL_new(), lib.X509_CRL_free, "X509_CRL_new") as crl,
    ):
        check_ok(b, lib.X509_CRL_set_version(crl, _X509_CRL_VERSION_2), "X509_CRL_set_version")
        issuer = check_ptr(b, lib.X509_get_subject_name(ca), "X509_get_subject_name")
        check_ok(b, lib.X509_CRL_set_issuer_name(crl, issuer), "X509_CRL_set_issuer_name")
        with _time(b, last_update) as t:
            check_ok(b, lib.X509_CRL_set1_lastUpdate(crl, t), "X509_CRL_set1_lastUpdate")
        with _time(b, next_update) as t:
            check_ok(b, lib.X509_CRL_set1_nextUpdate(crl, t), "X509_CRL_set1_nextUpdate")
        for serial, when in revoked.items():
            entry = check_ptr(b, lib.X509_REVOKED_new(), "X509_REVOKED_new")
            try:
                with _asn1_integer(b, serial) as number:
                    check_ok(b, lib.X509_REVOKED_set_serialNumber(entry, number), "revoked serial")
                with _time(b, when) as t:
                    check_ok(b, lib.X509_REVOKED_set_revocationDate(entry, t), "revocation date")
                check_ok(b, lib.X509_CRL_add0_revoked(crl, entry), "X509_CRL_add0_revoked")
            except GostError:
                lib.X509_REVOKED_free(entry)
                raise
        check_ok(b, lib.X509_CRL_sort(crl), "X509_CRL_sort")
        ext_ctx = _x509v3_ctx(b, issuer=ca, subject=None, crl=crl)
        ext = check_ptr(
            b,
            lib.X509V3_EXT_nconf(None, ext_ctx, b"authorityKeyIdentifier", b"keyid:always"),
            "CRL extension authorityKeyIdentifier",
        )
        try:
            check_ok(b, lib.X509_CRL_add_ext(crl, ext, -1), "X509_CRL_add_ext")
        finally:
            lib.X509_EXTENSION_free(ext)
        check_ok(b, lib.X509_CRL_sign(crl, ca_key.evp_pkey, b.streebog256), "signing the CRL")
        return pem_of(to_der(b, lib.i2d_X509_CRL, crl, "CRL"), "X509 CRL")


# --- libcrypto plumbing -------------------------------------------------------------


@contextmanager
def _owned(b: Backend, ptr: int | None, free: Callable[[int], None], what: str) -> Iterator[int]:
    """``ptr`` (checked not NULL), released with ``free`` when the block ends."""
    obj = check_ptr(b, ptr, what)
    try:
        yield obj
    finally:
        free(obj)


@contextmanager
def _subject_pkey(b: Backend, key: GostPublicKey | bytes) -> Iterator[int]:
    """The ``EVP_PKEY *`` of a certificate's subject key (borrowed from a GOST key)."""
    if isinstance(key, GostPublicKey):
        yield key.evp_pkey
        return
    pkey = from_der(b, b.lib.d2i_PUBKEY, b.lib.EVP_PKEY_free, key, "subject public key")
    try:
        yield pkey
    finally:
        b.lib.EVP_PKEY_free(pkey)


@contextmanager
def _x509(b: Backend, certificate: bytes) -> Iterator[int]:
    """A parsed ``X509 *`` from DER or PEM."""
    der = der_of(certificate, "CERTIFICATE")
    x509 = from_der(b, b.lib.d2i_X509, b.lib.X509_free, der, "CA certificate")
    try:
        yield x509
    finally:
        b.lib.X509_free(x509)


@contextmanager
def _time(b: Backend, when: datetime) -> Iterator[int]:
    if when.tzinfo is None:
        raise ValueError("certificate and CRL dates must be timezone-aware")
    with _owned(
        b, b.lib.ASN1_TIME_set(None, int(when.timestamp())), b.lib.ASN1_TIME_free, "ASN1_TIME_set"
    ) as t:
        yield t


@contextmanager
def _bignum(b: Backend, value: int) -> Iterator[int]:
    if value <= 0:
        raise ValueError("serial numbers are positive")
    raw = value.to_bytes((value.bit_length() + 7) // 8, "big")
    with _owned(b, b.lib.BN_bin2bn(raw, len(raw), None), b.lib.BN_free, "BN_bin2bn") as bn:
        yield bn


@contextmanager
def _asn1_integer(b: Backend, value: int) -> Iterator[int]:
    with (
        _bignum(b, value) as bn,
        _owned(
            b, b.lib.BN_to_ASN1_INTEGER(bn, None), b.lib.ASN1_INTEGER_free, "BN_to_ASN1_INTEGER"
        ) as number,
    ):
        yield number


def _set_common_fields(
    b: Backend,
    cert: int,
    common_name: str,
    organization: str | None,
    pkey: int,
    serial: int,
    not_before: datetime,
    not_after: datetime,
) -> int:
    """Version, serial, validity, subject and key; returns the subject name (owned by ``cert``)."""
    lib = b.lib
    check_ok(b, lib.X509_set_version(cert, _X509_VERSION_3), "X509_set_version")
    with _bignum(b, serial) as bn:
        # X509_get_serialNumber is the certificate's own field: write into it.
        check_ptr(b, lib.BN_to_ASN1_INTEGER(bn, lib.X509_get_serialNumber(cert)), "serial number")
    with _time(b, not_before) as t:
        check_ok(b, lib.X509_set1_notBefore(cert, t), "X509_set1_notBefore")
    with _time(b, not_after) as t:
        check_ok(b, lib.X509_set1_notAfter(cert, t), "X509_set1_notAfter")
    with _owned(b, lib.X509_NAME_new(), lib.X509_NAME_free, "X509_NAME_new") as name:
        entries = [(b"CN", common_name)] + ([(b"O", organization)] if organization else [])
        for field, value in entries:
            encoded = value.encode()
            check_ok(
                b,
                lib.X509_NAME_add_entry_by_txt(
                    name, field, _MBSTRING_UTF8, encoded, len(encoded), -1, 0
                ),
                f"subject {field.decode()}",
            )
        check_ok(b, lib.X509_set_subject_name(cert, name), "X509_set_subject_name")
    check_ok(b, lib.X509_set_pubkey(cert, pkey), "X509_set_pubkey")
    return check_ptr(b, lib.X509_get_subject_name(cert), "X509_get_subject_name")


def _x509v3_ctx(
    b: Backend, *, issuer: int, subject: int | None, crl: int | None
) -> ctypes.Array[ctypes.c_char]:
    ctx = ctypes.create_string_buffer(_X509V3_CTX_SIZE)  # zeroed: no config database
    b.lib.X509V3_set_ctx(ctx, issuer, subject, None, crl, 0)
    return ctx


def _add_extensions(
    b: Backend, cert: int, issuer: int, extensions: tuple[tuple[str, str], ...]
) -> None:
    ext_ctx = _x509v3_ctx(b, issuer=issuer, subject=cert, crl=None)
    for name, value in extensions:
        ext = check_ptr(
            b,
            b.lib.X509V3_EXT_nconf(None, ext_ctx, name.encode(), value.encode()),
            f"extension {name}",
        )
        try:
            check_ok(b, b.lib.X509_add_ext(cert, ext, -1), f"adding extension {name}")
        finally:
            b.lib.X509_EXTENSION_free(ext)


def _sign_certificate(b: Backend, cert: int, key: GostPrivateKey) -> bytes:
    check_ok(b, b.lib.X509_sign(cert, key.evp_pkey, b.streebog256), "signing the certificate")
    return pem_of(to_der(b, b.lib.i2d_X509, cert, "certificate"), "CERTIFICATE")
