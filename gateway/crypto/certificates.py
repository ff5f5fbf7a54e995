"""Small certificate helpers: fingerprints and readable names."""

from __future__ import annotations

import binascii
import functools
import hashlib
import re
from datetime import datetime

from cryptography import x509
from cryptography.hazmat.primitives.serialization import Encoding

#: Certificates whose fingerprint and common name are kept: every signed SOAP call asks
#: for its signer's (the same few certificates over and over). A certificate is equal
#: to another, so found here, only when its DER bytes are the same.
CACHED_CERTIFICATES = 1024


@functools.lru_cache(maxsize=CACHED_CERTIFICATES)
def fingerprint(cert: x509.Certificate) -> str:
    """SHA-256 of the DER encoding, lowercase hex without colons."""
    return hashlib.sha256(cert.public_bytes(Encoding.DER)).hexdigest()


def format_name(name: x509.Name) -> str:
    """An RFC 4514 string such as ``CN=MVD,O=Ministry of Internal Affairs``."""
    return name.rfc4514_string()


def describe(cert: x509.Certificate) -> str:
    """One line naming a certificate in error messages and logs."""
    return (
        f"subject {format_name(cert.subject)!r}, issuer {format_name(cert.issuer)!r}, "
        f"serial {cert.serial_number:x}, sha256 {fingerprint(cert)}"
    )


@functools.lru_cache(maxsize=CACHED_CERTIFICATES)
def common_name(cert: x509.Certificate) -> str | None:
    """The subject's first CN, which for participants is their mnemonic."""
    attrs = cert.subject.get_attributes_for_oid(x509.NameOID.COMMON_NAME)
    if not attrs:
        return None
    value = attrs[0].value
    return value if isinstance(value, str) else value.decode()


def validity_problem(cert: x509.Certificate, now: datetime) -> str | None:
    """Why ``cert`` is not valid at ``now`` (not yet, or no longer), else ``None``."""
    if now < cert.not_valid_before_utc:
        return f"certificate valid only from {cert.not_valid_before_utc.isoformat()}"
    if now >= cert.not_valid_after_utc:
        return f"certificate expired at {cert.not_valid_after_utc.isoformat()}"
    return None


_ASN1_LOCATION = re.compile(r"location: \[([^\]]*)\]")


def why_unreadable(exc: BaseException) -> str:
    """Why a certificate could not be read, in the sender's terms.

    cryptography's DER parser reports ``ParseError { kind: ShortData { needed: 96 } }``
    (its Rust structures): internals a client cannot act on, so they are replaced by
    what is wrong and where (the field named in ``location``)."""
    if isinstance(exc, binascii.Error):
        return "it is not valid base64"
    text = str(exc)
    if "ParseError" not in text and "asn1" not in text.lower():
        return text
    where = _ASN1_LOCATION.search(text)
    fields = [f.strip().strip('"') for f in where.group(1).split(",")] if where else []
    shown = [f for f in fields if f.replace("_", "").isalnum()]
    return "its DER encoding is malformed" + (f" (in {'.'.join(shown)})" if shown else "")
