"""One exception tree for everything a client, the bus or a provider can get wrong.

Every error carries a stable snake_case ``code`` (DESIGN.md section 7), a message a
person can act on, and the party at fault (``origin``), as X-Road does. A class that
introduces a code declares, once and here, its ``code``, ``origin`` and ``http_status``;
its SOAP 1.1 faultcode follows from the origin (``soap:Client`` when the client must fix
something, else ``soap:Server``), so the two can never disagree. Defining the class
registers it: :func:`error_classes` and :func:`error_class` are derived, never listed by
hand. Subclasses that keep their parent's code (``TransportUnavailable`` is an
``internal``) refine it for the code that raises them and register nothing.

Serializing an error as a SOAP Fault or as problem+json is :mod:`gateway.core.faults`.
"""

from __future__ import annotations

from enum import StrEnum
from typing import Any, ClassVar


class Origin(StrEnum):
    """Who has to act to fix the failure."""

    CLIENT = "client"
    BUS = "bus"
    PROVIDER = "provider"


class SoapFaultCode(StrEnum):
    """The SOAP 1.1 ``faultcode``: whether the sender has to change its message."""

    CLIENT = "soap:Client"
    SERVER = "soap:Server"


_REGISTRY: dict[str, type[SmevbusError]] = {}


class SmevbusError(Exception):
    """Base of every error smevbus reports to a participant."""

    code: ClassVar[str] = "internal"
    origin: ClassVar[Origin] = Origin.BUS
    #: The status of a REST (problem+json) answer carrying this error.
    http_status: ClassVar[int] = 500
    #: Derived from ``origin`` when the class is defined.
    soap_faultcode: ClassVar[SoapFaultCode] = SoapFaultCode.SERVER
    #: Whether retrying the same message later can succeed.
    transient: ClassVar[bool] = False

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        cls.soap_faultcode = (
            SoapFaultCode.CLIENT if cls.origin is Origin.CLIENT else SoapFaultCode.SERVER
        )
        declared = cls.__dict__.get("code")
        parents = [
            b for b in cls.__mro__[1:] if issubclass(b, SmevbusError) and b is not SmevbusError
        ]
        if declared is None or declared in {b.code for b in parents}:
            return  # a refinement of its parent's code
        if "http_status" not in cls.__dict__:
            raise TypeError(f"{cls.__name__} introduces code {cls.code!r} without an http_status")
        other = _REGISTRY.get(cls.code)
        if other is not None:
            raise TypeError(f"code {cls.code!r} of {cls.__name__} is {other.__name__}'s already")
        _REGISTRY[cls.code] = cls

    def __init__(self, message: str, **detail: Any) -> None:
        super().__init__(message)
        self.message = message
        self.detail: dict[str, Any] = detail

    def __str__(self) -> str:
        return f"{self.code}: {self.message}"

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.message!r}, code={self.code!r})"


def error_classes() -> tuple[type[SmevbusError], ...]:
    """The class of every stable code, in the order they were defined."""
    return tuple(_REGISTRY.values())


def error_class(code: str) -> type[SmevbusError] | None:
    """The class that introduced ``code``, or ``None`` for a code this bus does not know."""
    return _REGISTRY.get(code)


class InvalidContent(SmevbusError):
    """Not well-formed, forbidden constructs (DTD, entities), too deep, wrong structure."""

    code = "invalid_content"
    origin = Origin.CLIENT
    http_status = 400


class SchemaViolation(SmevbusError):
    code = "schema_violation"
    origin = Origin.CLIENT
    http_status = 422


class SignatureInvalid(SmevbusError):
    """Missing, malformed or non-matching XMLDSig signature, or signature wrapping."""

    code = "signature_invalid"
    origin = Origin.CLIENT
    http_status = 401


class CertificateUntrusted(SmevbusError):
    """Certificate does not chain to the trust store, or is revoked."""

    code = "certificate_untrusted"
    origin = Origin.CLIENT
    http_status = 401


class CertificateExpired(SmevbusError):
    """Certificate outside its validity period (expired or not yet valid)."""

    code = "certificate_expired"
    origin = Origin.CLIENT
    http_status = 401


class SenderNotRegistered(SmevbusError):
    code = "sender_not_registered"
    origin = Origin.CLIENT
    http_status = 403


class AccessDenied(SmevbusError):
    code = "access_denied"
    origin = Origin.CLIENT
    http_status = 403


class MessageAlreadySent(SmevbusError):
    """Same MessageID resubmitted with different content (a replay or a client bug), or
    a second final answer to a request that has its final answer already."""

    code = "message_already_sent"
    origin = Origin.CLIENT
    http_status = 409


class StaleMessageId(SmevbusError):
    """MessageID (UUID v1) timestamp outside the accepted window: a replay or a bad clock."""

    code = "stale_message_id"
    origin = Origin.CLIENT
    http_status = 409


class ReplayedRequest(SmevbusError):
    """A signed pull request (GetRequest, GetResponse) the bus has received before.

    SMEV 3 names no fault for this (its StaleMessageId is about a MessageID's age, and
    a client reading it checks its clock, which is not the problem here): a captured
    request posted again would hand its poster the next queued message.
    """

    code = "replayed_request"
    origin = Origin.CLIENT
    http_status = 409


class DestinationUnknown(SmevbusError):
    """No registered participant provides this message type."""

    code = "destination_unknown"
    origin = Origin.CLIENT
    http_status = 404


class MessageTooLarge(SmevbusError):
    code = "message_too_large"
    origin = Origin.CLIENT
    http_status = 413


class UnsupportedMediaType(SmevbusError):
    """A request body of a media type the endpoint does not take (``/ws``: SOAP only)."""

    code = "unsupported_media_type"
    origin = Origin.CLIENT
    http_status = 415


class IdempotencyKeyReused(SmevbusError):
    """An ``Idempotency-Key`` presented again with another request body (HTTP 422, as the
    IETF httpapi Idempotency-Key draft says): the first request under the key stands."""

    code = "idempotency_key_reused"
    origin = Origin.CLIENT
    http_status = 422


class QuotaExceeded(SmevbusError):
    code = "quota_exceeded"
    origin = Origin.CLIENT
    http_status = 429
    transient = True


class NotFound(SmevbusError):
    code = "not_found"
    origin = Origin.CLIENT
    http_status = 404


class ProviderFailure(SmevbusError):
    """The provider (agency) failed to answer or answered something unusable."""

    code = "provider_failure"
    origin = Origin.PROVIDER
    http_status = 502
    transient = True


class InternalError(SmevbusError):
    """A fault of the bus itself; the client may retry."""

    code = "internal"
    origin = Origin.BUS
    http_status = 500
    transient = True


class Unauthenticated(SmevbusError):
    """REST: no bearer token, or one the gateway does not know."""

    code = "unauthenticated"
    origin = Origin.CLIENT
    http_status = 401


class Conflict(SmevbusError):
    """REST: the request clashes with the resource's current state (e.g. cancelling a
    final service request)."""

    code = "conflict"
    origin = Origin.CLIENT
    http_status = 409
