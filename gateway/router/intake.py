"""The checks every incoming SOAP document passes, in order, each a small function.

parse (hardened) -> SOAP 1.1 structure -> bus schema -> signature and certificate ->
the certificate decides the caller (registry) -> a TLS client certificate, if the
caller presented one, must be the same participant's. Then the verified envelope
becomes plain values (:mod:`gateway.core.envelope`) for the pure admission rules
(:mod:`gateway.core.admission`: freshness, end of life, rights).
"""

from __future__ import annotations

import hashlib
import uuid
from dataclasses import dataclass

from cryptography import x509
from cryptography.exceptions import UnsupportedAlgorithm
from cryptography.x509 import InvalidVersion
from lxml import etree

from gateway.core.envelope import (
    AsyncProcessingStatus,
    PrimaryContent,
    RejectionCode,
    RequestRejected,
    SenderProvidedRequestData,
    SenderProvidedResponseData,
)
from gateway.core.errors import AccessDenied, InvalidContent, SenderNotRegistered, SignatureInvalid
from gateway.core.registry import Participant, Registry
from gateway.crypto.certificates import common_name, describe, fingerprint, why_unreadable
from gateway.crypto.envelope import verify_element
from gateway.router.context import BusContext
from gateway.xml.messages import SMEV_ID, RequestData, ResponseData
from gateway.xml.parse import parse_secure
from gateway.xml.schema import validate_bus_element
from gateway.xml.soap import signature_target, unwrap_envelope


@dataclass(frozen=True, eq=False)
class Incoming:
    operation: str
    body: etree._Element


def read_envelope(raw: bytes, ctx: BusContext) -> Incoming:
    """Parse and structurally validate a SOAP request to the bus."""
    root = parse_secure(raw, max_bytes=ctx.max_message_bytes, limits=ctx.xml_limits)
    operation, body = unwrap_envelope(root)
    if not body.tag.endswith("Request"):  # its local name: the tag ends with it
        raise InvalidContent(
            f"<{etree.QName(body).localname}> is a reply; send {operation}Request to the bus",
            reason="operation",
        )
    validate_bus_element(body)
    return Incoming(operation, body)


def authenticate(body: etree._Element, ctx: BusContext) -> Participant:
    """Verify the caller's signature; the certificate, not any claim, names the caller."""
    target = signature_target(body)
    if target.get("Id") == SMEV_ID:
        raise SignatureInvalid(
            f"Id {SMEV_ID!r} is reserved for the bus's own signature; sign with another Id",
            reason="reserved_id",
        )
    try:
        cert = verify_element(body, ctx.verifier, target=target)
        cn = common_name(cert)
        if cn is None:
            raise SignatureInvalid(f"signing certificate has no common name ({describe(cert)})")
    except (ValueError, TypeError, UnsupportedAlgorithm, InvalidVersion) as exc:
        # cryptography parses parts of a certificate lazily: a damaged X509Certificate in
        # KeyInfo can fail on first use of its key, issuer or subject (ValueError, or
        # TypeError for an attribute of the wrong ASN.1 type). The caller sent it.
        raise SignatureInvalid(
            f"X509Certificate in KeyInfo is not a usable certificate: {why_unreadable(exc)}",
            reason="certificate",
        ) from None
    return ctx.registry.identify(cn, fingerprint(cert))


def check_tls_client(
    caller: Participant, certificate: x509.Certificate | None, registry: Registry
) -> None:
    """A TLS client certificate (the TLS layer checked its chain) must be the signer's.

    The registry names its owner exactly as it does a signature's (CN and fingerprint):
    a connection made with one participant's certificate carries no other's messages.
    """
    if certificate is None:
        return
    try:
        owner: Participant | None = registry.identify(
            common_name(certificate) or "", fingerprint(certificate)
        )
    except SenderNotRegistered:
        owner = None
    if owner is not None and owner.mnemonic == caller.mnemonic:
        return
    whose = "no registered participant" if owner is None else owner.mnemonic
    raise AccessDenied(
        f"the TLS client certificate ({describe(certificate)}) belongs to {whose}, but the "
        f"message is signed by {caller.mnemonic}: connect with {caller.mnemonic}'s own TLS "
        "client certificate",
        reason="tls_client_certificate",
        participant=caller.mnemonic,
    )


def _require_v1(message_id: uuid.UUID) -> None:
    # basic:UUID takes any version; SMEV 3 message ids are version 1 (they carry their
    # creation time): InvalidMessageIdFormat on the wire.
    if message_id.version != 1:
        raise InvalidContent(
            f"MessageID {message_id} is not a UUID version 1 (time-based), as SMEV 3 requires",
            reason="message_id",
            message_id=str(message_id),
        )


def request_model(data: RequestData, message_type: str) -> SenderProvidedRequestData:
    """The verified request as plain values for the pure admission rules."""
    _require_v1(data.message_id)
    return SenderProvidedRequestData(
        message_id=data.message_id,
        content=_content(data.content, message_type),
        test_message=data.test,
        eol=data.eol,
        reference_message_id=data.reference_message_id,
        transaction_code=data.transaction_code,
    )


def response_model(data: ResponseData, message_type: str | None) -> SenderProvidedResponseData:
    _require_v1(data.message_id)
    return SenderProvidedResponseData(
        message_id=data.message_id,
        to=uuid.UUID(data.to),
        content=None
        if data.content is None or message_type is None
        else _content(data.content, message_type),
        rejections=tuple(
            RequestRejected(code=RejectionCode(r.code), description=r.description)
            for r in data.rejections
        ),
        status=_interim(data),
    )


def _interim(data: ResponseData) -> AsyncProcessingStatus | None:
    """An interim answer: AsyncProcessingStatus, or RequestStatus (a business status,
    kept whole in the journaled XML, summarized here)."""
    if data.status is not None:
        return AsyncProcessingStatus(category=data.status.category, details=data.status.details)
    if data.request_status is not None:
        status = data.request_status
        return AsyncProcessingStatus(
            category="underProcessing",
            details=f"RequestStatus {status.code}: {status.description}",
        )
    return None


def _content(element: etree._Element, message_type: str) -> PrimaryContent:
    return PrimaryContent(message_type=message_type, root=etree.QName(element).localname)


def content_digest(signed: etree._Element) -> str:
    """SHA-256 of the signed part's exclusive c14n: equal for a resubmission of it."""
    return hashlib.sha256(etree.tostring(signed, method="c14n", exclusive=True)).hexdigest()
