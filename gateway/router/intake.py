"""The checks every incoming SOAP document passes, in order, each a small function.

parse (hardened) -> SOAP 1.1 structure -> bus schema -> signature and certificate ->
the certificate decides the caller (registry) -> freshness of ids and timestamps.
Business-content schema and rights depend on the operation and live in the router.
"""

from __future__ import annotations

import hashlib
import uuid
from dataclasses import dataclass
from datetime import datetime, timedelta

from cryptography.exceptions import UnsupportedAlgorithm
from cryptography.x509 import InvalidVersion
from lxml import etree

from gateway.core.clock import uuid1_time
from gateway.core.errors import InvalidContent, SignatureInvalid, StaleMessageId
from gateway.core.registry import Participant
from gateway.crypto.certificates import common_name, describe, fingerprint
from gateway.crypto.envelope import verify_element
from gateway.router.context import BusContext
from gateway.xml.messages import SMEV_ID
from gateway.xml.parse import parse_secure
from gateway.xml.schema import validate_bus_element
from gateway.xml.soap import signature_target, unwrap_envelope


@dataclass(frozen=True, eq=False)
class Incoming:
    operation: str
    body: etree._Element


def read_envelope(raw: bytes, ctx: BusContext) -> Incoming:
    """Parse and structurally validate a SOAP request to the bus."""
    root = parse_secure(raw, max_bytes=ctx.max_message_bytes)
    operation, body = unwrap_envelope(root)
    if not etree.QName(body).localname.endswith("Request"):
        raise InvalidContent(
            f"<{etree.QName(body).localname}> is a reply; send {operation}Request to the bus",
            reason="operation",
        )
    validate_bus_element(body)
    return Incoming(operation, body)


def authenticate(body: etree._Element, ctx: BusContext) -> Participant:
    """Verify the caller's signature; the certificate, not any claim, names the caller."""
    if signature_target(body).get("Id") == SMEV_ID:
        raise SignatureInvalid(
            f"Id {SMEV_ID!r} is reserved for the bus's own signature; sign with another Id",
            reason="reserved_id",
        )
    try:
        cert = verify_element(body, ctx.verifier)
        cn = common_name(cert)
        if cn is None:
            raise SignatureInvalid(f"signing certificate has no common name ({describe(cert)})")
    except (ValueError, TypeError, UnsupportedAlgorithm, InvalidVersion) as exc:
        # cryptography parses parts of a certificate lazily: a damaged X509Certificate in
        # KeyInfo can fail on first use of its key, issuer or subject (ValueError, or
        # TypeError for an attribute of the wrong ASN.1 type). The caller sent it.
        raise SignatureInvalid(
            f"X509Certificate in KeyInfo is not a usable certificate: {exc}",
            reason="certificate",
        ) from None
    return ctx.registry.identify(cn, fingerprint(cert))


def check_message_id(message_id: uuid.UUID, ctx: BusContext) -> None:
    """A MessageID must be a UUID v1 made recently: an old one is a replay or a bad clock."""
    try:
        made = uuid1_time(message_id)
    except ValueError:
        raise InvalidContent(
            f"MessageID {message_id} is not a UUID version 1 (time-based), as SMEV 3 requires",
            reason="message_id",
        ) from None
    _check_window(made, ctx, what=f"MessageID {message_id}", past=ctx.message_id_window)


def check_timestamp(timestamp: datetime, ctx: BusContext, *, what: str) -> None:
    """A signed selector timestamp must be close to now (a replayed poll is refused)."""
    _check_window(timestamp, ctx, what=what, past=ctx.clock_skew)


def _check_window(when: datetime, ctx: BusContext, *, what: str, past: timedelta) -> None:
    now = ctx.clock.now()
    if when < now - past or when > now + ctx.clock_skew:
        raise StaleMessageId(
            f"{what} carries time {when.isoformat()}, outside the accepted window "
            f"({now - past:%Y-%m-%dT%H:%M:%SZ} .. {now + ctx.clock_skew:%Y-%m-%dT%H:%M:%SZ}); "
            "generate a new one and check the sender's clock",
            at=when.isoformat(),
        )


def check_eol(eol: datetime | None, ctx: BusContext) -> None:
    if eol is not None and eol <= ctx.clock.now():
        raise InvalidContent(
            f"end of life {eol.isoformat()} has already passed; send with a later EOL",
            reason="eol",
        )


def content_digest(signed: etree._Element) -> str:
    """SHA-256 of the signed part's exclusive c14n: equal for a resubmission of it."""
    return hashlib.sha256(etree.tostring(signed, method="c14n", exclusive=True)).hexdigest()
