"""One exception tree for everything a client, the bus or a provider can get wrong.

Every error carries a stable snake_case ``code`` (DESIGN.md section 7), a message a
person can act on, and the party at fault (``origin``), as X-Road does. The mapping to
SOAP Faults and HTTP problem+json lives in :mod:`gateway.core.faults`.
"""

from __future__ import annotations

from enum import StrEnum
from typing import Any, ClassVar


class Origin(StrEnum):
    """Who has to act to fix the failure."""

    CLIENT = "client"
    BUS = "bus"
    PROVIDER = "provider"


class SmevbusError(Exception):
    """Base of every error smevbus reports to a participant."""

    code: ClassVar[str] = "internal"
    origin: ClassVar[Origin] = Origin.BUS
    #: Whether retrying the same message later can succeed.
    transient: ClassVar[bool] = False

    def __init__(self, message: str, **detail: Any) -> None:
        super().__init__(message)
        self.message = message
        self.detail: dict[str, Any] = detail

    def __str__(self) -> str:
        return f"{self.code}: {self.message}"

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.message!r}, code={self.code!r})"


class InvalidContent(SmevbusError):
    """Not well-formed, forbidden constructs (DTD, entities), too deep, wrong structure."""

    code = "invalid_content"
    origin = Origin.CLIENT


class SchemaViolation(SmevbusError):
    code = "schema_violation"
    origin = Origin.CLIENT


class SignatureInvalid(SmevbusError):
    """Missing, malformed or non-matching XMLDSig signature, or signature wrapping."""

    code = "signature_invalid"
    origin = Origin.CLIENT


class CertificateUntrusted(SmevbusError):
    """Certificate does not chain to the trust store, or is revoked."""

    code = "certificate_untrusted"
    origin = Origin.CLIENT


class CertificateExpired(SmevbusError):
    """Certificate outside its validity period (expired or not yet valid)."""

    code = "certificate_expired"
    origin = Origin.CLIENT


class SenderNotRegistered(SmevbusError):
    code = "sender_not_registered"
    origin = Origin.CLIENT


class AccessDenied(SmevbusError):
    code = "access_denied"
    origin = Origin.CLIENT


class MessageAlreadySent(SmevbusError):
    """Same MessageID resubmitted with different content (a replay or a client bug), or
    a second final answer to a request that has its final answer already."""

    code = "message_already_sent"
    origin = Origin.CLIENT


class StaleMessageId(SmevbusError):
    """MessageID (UUID v1) timestamp outside the accepted window: a replay or a bad clock."""

    code = "stale_message_id"
    origin = Origin.CLIENT


class ReplayedRequest(SmevbusError):
    """A signed pull request (GetRequest, GetResponse) the bus has received before.

    SMEV 3 names no fault for this (its StaleMessageId is about a MessageID's age, and
    a client reading it checks its clock, which is not the problem here): a captured
    request posted again would hand its poster the next queued message.
    """

    code = "replayed_request"
    origin = Origin.CLIENT


class DestinationUnknown(SmevbusError):
    """No registered participant provides this message type."""

    code = "destination_unknown"
    origin = Origin.CLIENT


class MessageTooLarge(SmevbusError):
    code = "message_too_large"
    origin = Origin.CLIENT


class UnsupportedMediaType(SmevbusError):
    """A request body of a media type the endpoint does not take (``/ws``: SOAP only)."""

    code = "unsupported_media_type"
    origin = Origin.CLIENT


class IdempotencyKeyReused(SmevbusError):
    """An ``Idempotency-Key`` presented again with another request body (HTTP 422, as the
    IETF httpapi Idempotency-Key draft says): the first request under the key stands."""

    code = "idempotency_key_reused"
    origin = Origin.CLIENT


class QuotaExceeded(SmevbusError):
    code = "quota_exceeded"
    origin = Origin.CLIENT
    transient = True


class NotFound(SmevbusError):
    code = "not_found"
    origin = Origin.CLIENT


class ProviderFailure(SmevbusError):
    """The provider (agency) failed to answer or answered something unusable."""

    code = "provider_failure"
    origin = Origin.PROVIDER
    transient = True


class InternalError(SmevbusError):
    """A fault of the bus itself; the client may retry."""

    code = "internal"
    origin = Origin.BUS
    transient = True


ALL_ERRORS: tuple[type[SmevbusError], ...] = (
    InvalidContent,
    SchemaViolation,
    SignatureInvalid,
    CertificateUntrusted,
    CertificateExpired,
    SenderNotRegistered,
    AccessDenied,
    MessageAlreadySent,
    StaleMessageId,
    ReplayedRequest,
    DestinationUnknown,
    MessageTooLarge,
    UnsupportedMediaType,
    IdempotencyKeyReused,
    QuotaExceeded,
    NotFound,
    ProviderFailure,
    InternalError,
)
