"""The trust store: which certificates the bus accepts as signers.

A certificate is trusted when it is issued directly by one of the configured CAs,
that CA is itself within its validity period, the certificate is within its own
validity period at the injected clock's ``now()``, no CRL issued by that CA
lists its serial number, and it is fit to sign messages: no CA certificate, and a key
usage, when it states one, that includes digitalSignature or nonRepudiation (RFC 5280
section 4.2.1.3: a key for key agreement or certificate signing only never signs data).
CRL signatures are checked once, when the store is built.
A CRL past its ``nextUpdate`` is still used (a stale list is better than none in a
closed dev/regional deployment); operators replace ``crl.pem`` to refresh it.

Certificates and CRLs signed with GOST R 34.10-2012 are checked by the gost engine
(:mod:`gateway.crypto.gost`), which ``cryptography`` does not have; the rest of the
checks read them through ``cryptography`` like any other.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path

from cryptography import x509
from cryptography.exceptions import InvalidSignature, UnsupportedAlgorithm
from cryptography.hazmat.primitives.serialization import Encoding

from gateway.core.clock import Clock
from gateway.core.errors import CertificateExpired, CertificateUntrusted, InternalError
from gateway.crypto import gost
from gateway.crypto.certificates import describe, format_name

CA_CERT_FILE = "ca.cert.pem"
CRL_FILE = "crl.pem"


@dataclass
class _Anchor:
    cert: x509.Certificate
    crls: list[x509.CertificateRevocationList] = field(default_factory=list)


@dataclass(frozen=True)
class _Facts:
    anchor: _Anchor
    ca_from: datetime
    ca_until: datetime
    valid_from: datetime
    valid_until: datetime
    revocations: tuple[tuple[x509.CertificateRevocationList, datetime], ...]
    #: Why the certificate may not sign messages at all, or None.
    unfit: str | None = None


class TrustStore:
    def __init__(
        self,
        ca_certs: list[x509.Certificate],
        crls: list[x509.CertificateRevocationList],
        clock: Clock,
    ) -> None:
        self._clock = clock
        self._anchors: dict[x509.Name, list[_Anchor]] = {}
        for ca in ca_certs:
            _require_ca(ca)
            self._anchors.setdefault(ca.subject, []).append(_Anchor(ca))
        for crl in crls:
            self._attach_crl(crl)
        # cert -> the anchor whose signature on it checked out; the signature check is
        # the costly part and cannot change, unlike validity and revocation.
        self._issuer_cache: dict[x509.Certificate, _Anchor] = {}
        self._facts: dict[x509.Certificate, _Facts] = {}

    @classmethod
    def from_dir(cls, keys_dir: Path, clock: Clock) -> TrustStore:
        """Load ``ca.cert.pem`` (one or more CAs) and, if present, ``crl.pem``."""
        ca_path = keys_dir / CA_CERT_FILE
        if not ca_path.is_file():
            raise InternalError(
                f"trust store not found: {ca_path} is missing; run `smevbus keys init`",
                path=str(ca_path),
            )
        cas = x509.load_pem_x509_certificates(ca_path.read_bytes())
        crl_path = keys_dir / CRL_FILE
        crls = _load_crls(crl_path.read_bytes()) if crl_path.is_file() else []
        return cls(cas, crls, clock)

    def check(self, cert: x509.Certificate) -> None:
        """Raise CertificateUntrusted or CertificateExpired unless ``cert`` is trusted now."""
        facts = self._facts.get(cert)
        if facts is None:
            facts = self._facts[cert] = self._facts_of(cert)
        if facts.unfit is not None:
            raise CertificateUntrusted(
                f"{facts.unfit}; sign with a participant's signing certificate ({describe(cert)})",
                certificate=describe(cert),
            )
        now = self._clock.now()
        ca = facts.anchor.cert
        if not facts.ca_from <= now <= facts.ca_until:
            raise CertificateUntrusted(
                f"the issuing CA {format_name(ca.subject)!r} is valid only from "
                f"{_iso(facts.ca_from)} to {_iso(facts.ca_until)}; now is {_iso(now)}",
                certificate=describe(cert),
            )
        if now < facts.valid_from:
            raise CertificateExpired(
                f"certificate is not valid before {_iso(facts.valid_from)}; "
                f"now is {_iso(now)} ({describe(cert)})",
                not_before=_iso(facts.valid_from),
            )
        if now > facts.valid_until:
            raise CertificateExpired(
                f"certificate expired at {_iso(facts.valid_until)}; now is {_iso(now)}; "
                f"renew it ({describe(cert)})",
                not_after=_iso(facts.valid_until),
            )
        for crl, revoked_at in facts.revocations:
            if revoked_at <= now:
                raise CertificateUntrusted(
                    f"certificate serial {cert.serial_number:x} was revoked on "
                    f"{_iso(revoked_at)} by {format_name(crl.issuer)!r} ({describe(cert)})",
                    serial=f"{cert.serial_number:x}",
                    revoked_at=_iso(revoked_at),
                )

    def _facts_of(self, cert: x509.Certificate) -> _Facts:
        """What never changes for a certificate in this store: its issuer (the costly
        signature check), its and the CA's validity windows, its revocations."""
        anchor = self._issuer(cert)
        revocations = []
        for crl in anchor.crls:
            revoked = crl.get_revoked_certificate_by_serial_number(cert.serial_number)
            if revoked is not None:
                revocations.append((crl, revoked.revocation_date_utc))
        return _Facts(
            anchor=anchor,
            ca_from=anchor.cert.not_valid_before_utc,
            ca_until=anchor.cert.not_valid_after_utc,
            valid_from=cert.not_valid_before_utc,
            valid_until=cert.not_valid_after_utc,
            revocations=tuple(revocations),
            unfit=_unfit_to_sign(cert),
        )

    def _issuer(self, cert: x509.Certificate) -> _Anchor:
        cached = self._issuer_cache.get(cert)
        if cached is not None:
            return cached
        candidates = self._anchors.get(cert.issuer, [])
        if not candidates:
            known = ", ".join(repr(format_name(n)) for n in self._anchors) or "none"
            raise CertificateUntrusted(
                f"certificate issuer {format_name(cert.issuer)!r} is not a trusted CA "
                f"(trusted: {known}); {describe(cert)}",
                issuer=format_name(cert.issuer),
            )
        for anchor in candidates:
            if _issued_by(cert, anchor.cert):
                self._issuer_cache[cert] = anchor
                return anchor
        raise CertificateUntrusted(
            f"certificate names the trusted CA {format_name(cert.issuer)!r} as issuer, "
            f"but its signature does not verify with that CA's key; {describe(cert)}",
            issuer=format_name(cert.issuer),
        )

    def _attach_crl(self, crl: x509.CertificateRevocationList) -> None:
        for anchor in self._anchors.get(crl.issuer, []):
            if _crl_signed_by(crl, anchor.cert):
                anchor.crls.append(crl)
                return
        raise InternalError(
            f"CRL issued by {format_name(crl.issuer)!r} is not signed by any trusted CA; "
            "replace crl.pem (run `smevbus keys init` for a dev setup)",
        )


# GOST R 34.10 signature algorithms are under the Russian arc 1.2.643.
_GOST_ARC = "1.2.643."


def _issued_by(cert: x509.Certificate, ca: x509.Certificate) -> bool:
    """Whether ``ca``'s key signed ``cert`` (the names are already known to match)."""
    if cert.signature_algorithm_oid.dotted_string.startswith(_GOST_ARC):
        try:
            return gost.verify_certificate_signature(_der(cert), _der(ca))
        except (gost.GostError, gost.GostUnavailable):
            return False
    try:
        cert.verify_directly_issued_by(ca)
    except (ValueError, TypeError, InvalidSignature, UnsupportedAlgorithm):
        return False
    return True


def _crl_signed_by(crl: x509.CertificateRevocationList, ca: x509.Certificate) -> bool:
    if crl.signature_algorithm_oid.dotted_string.startswith(_GOST_ARC):
        try:
            return gost.verify_crl_signature(crl.public_bytes(Encoding.DER), _der(ca))
        except (gost.GostError, gost.GostUnavailable):
            return False
    try:
        return crl.is_signature_valid(ca.public_key())  # type: ignore[arg-type]
    except (ValueError, TypeError, UnsupportedAlgorithm):
        return False


def _der(cert: x509.Certificate) -> bytes:
    return cert.public_bytes(Encoding.DER)


def _require_ca(cert: x509.Certificate) -> None:
    try:
        constraints = cert.extensions.get_extension_for_class(x509.BasicConstraints).value
    except x509.ExtensionNotFound:
        constraints = None
    if constraints is None or not constraints.ca:
        raise InternalError(
            f"trust store entry is not a CA certificate (no BasicConstraints CA=true): "
            f"{describe(cert)}"
        )


def _unfit_to_sign(cert: x509.Certificate) -> str | None:
    extensions = cert.extensions
    try:
        constraints = extensions.get_extension_for_class(x509.BasicConstraints).value
    except x509.ExtensionNotFound:
        constraints = None
    if constraints is not None and constraints.ca:
        return "a CA certificate (BasicConstraints CA=true) may sign only certificates"
    try:
        usage = extensions.get_extension_for_class(x509.KeyUsage).value
    except x509.ExtensionNotFound:
        return None
    if usage.digital_signature or usage.content_commitment:
        return None
    return "the certificate's key usage allows neither digitalSignature nor nonRepudiation"


def _load_crls(data: bytes) -> list[x509.CertificateRevocationList]:
    marker = b"-----BEGIN X509 CRL-----"
    chunks = [marker + part for part in data.split(marker)[1:]]
    return [x509.load_pem_x509_crl(chunk) for chunk in chunks]


def _iso(when: datetime) -> str:
    return when.isoformat()
