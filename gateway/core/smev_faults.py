"""Which SMEV 3 (1.1) named fault an error becomes, per operation: the one mapping.

The bus's errors keep their stable codes (:mod:`gateway.core.errors`) for REST, logs and
metrics. On ``/ws`` a client built from the published 1.1 WSDL expects, in the SOAP Fault
detail, one of the fault elements its operation declares; :func:`named_fault` picks it.
docs/smev3-compatibility.md, section 3, is this module as a table.

Rules: :data:`FAULT_TABLE` gives the element for a code (refined by the error's
``reason`` where one code covers several 1.1 faults); an element the operation does not
declare, or a code the table does not know, falls back to ``SMEVFailure`` when retrying
can help (the bus's or a provider's error, or a transient one) and to ``InvalidContent``
when the client must change its message. So every answer names a fault of the operation's own list.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from enum import StrEnum
from typing import Any, Final

from gateway.core.errors import Origin, SmevbusError, SoapFaultCode


class Operation(StrEnum):
    """The operations of SMEV 3 message exchange 1.1."""

    SEND_REQUEST = "SendRequest"
    GET_REQUEST = "GetRequest"
    SEND_RESPONSE = "SendResponse"
    GET_RESPONSE = "GetResponse"
    ACK = "Ack"
    GET_STATUS = "GetStatus"
    GET_INCOMING_QUEUE_STATISTICS = "GetIncomingQueueStatistics"


class SignatureFaultCode(StrEnum):
    """Inner code of ``SignatureVerificationFault``."""

    POOR_SOAP_ENVELOPE_FORMAT = "PoorSOAPEnvelopeFormat"
    NO_SIGNATURE_FOUND = "NoSignatureFound"
    INCORRECT_SIGNATURE_TARGET = "IncorrectSignatureTarget"
    SIGNATURE_IS_INVALID = "SignatureIsInvalid"
    CERTIFICATE_IS_NOT_FOUND = "CertificateIsNotFound"
    CERTIFICATE_IS_EXPIRED = "CertificateIsExpired"


_COMMON: Final = frozenset(
    {"InvalidContent", "SMEVFailure", "SenderIsNotRegistered", "SignatureVerificationFault"}
)
_SEND: Final = _COMMON | {
    "AttachmentContentMiscoordination",
    "AttachmentSizeLimitExceeded",
    "BusinessDataTypeIsNotSupported",
    "DestinationOverflow",
    "InvalidMessageIdFormat",
    "MessageIsAlreadySent",
    "QuoteLimitExceeded",
    "RecipientIsNotFound",
    "StaleMessageId",
}
OPERATION_FAULTS: Final[Mapping[Operation, frozenset[str]]] = {
    Operation.SEND_REQUEST: _SEND | {"AccessDenied", "EndOfLifeReached", "TransactionCodeInvalid"},
    Operation.SEND_RESPONSE: _SEND | {"IncorrectResponseContentType"},
    Operation.GET_REQUEST: _COMMON | {"UnknownMessageType"},
    Operation.GET_RESPONSE: _COMMON | {"UnknownMessageType"},
    Operation.GET_STATUS: _COMMON | {"UnknownMessageType"},
    Operation.ACK: _COMMON | {"TargetMessageIsNotFound"},
    Operation.GET_INCOMING_QUEUE_STATISTICS: _COMMON,
}
"""The named faults each operation declares in the 1.1 WSDL."""

_SMEV_FAULT_TYPED: Final = frozenset(
    {
        "AttachmentSizeLimitExceeded",
        "BusinessDataTypeIsNotSupported",
        "DestinationOverflow",
        "InvalidContent",
        "QuoteLimitExceeded",
        "SignatureVerificationFault",
        "TransactionCodeInvalid",
    }
)
"""Fault elements whose type extends ``basic:SmevFault`` (they carry Code, Description)."""

_ANY: Final = "*"
FAULT_TABLE: Final[Mapping[str, Mapping[str, tuple[str, ...]]]] = {
    # code -> reason ("*": any) -> candidate elements, first one the operation declares wins
    "invalid_content": {
        "message_id": ("InvalidMessageIdFormat", "InvalidContent"),
        "eol": ("EndOfLifeReached", "InvalidContent"),
        _ANY: ("InvalidContent",),
    },
    "schema_violation": {
        "message_type": ("BusinessDataTypeIsNotSupported", "UnknownMessageType", "InvalidContent"),
        "content_kind": ("IncorrectResponseContentType", "InvalidContent"),
        _ANY: ("InvalidContent",),
    },
    "signature_invalid": {_ANY: ("SignatureVerificationFault",)},
    "certificate_untrusted": {_ANY: ("SignatureVerificationFault",)},
    "certificate_expired": {_ANY: ("SignatureVerificationFault",)},
    "sender_not_registered": {_ANY: ("SenderIsNotRegistered",)},
    "unauthenticated": {_ANY: ("SenderIsNotRegistered",)},
    "access_denied": {
        _ANY: (
            "AccessDenied",
            "BusinessDataTypeIsNotSupported",
            "UnknownMessageType",
            "TargetMessageIsNotFound",
            "SenderIsNotRegistered",
        )
    },
    "destination_unknown": {
        _ANY: ("RecipientIsNotFound", "UnknownMessageType", "TargetMessageIsNotFound")
    },
    "not_found": {_ANY: ("RecipientIsNotFound", "UnknownMessageType", "TargetMessageIsNotFound")},
    "message_already_sent": {_ANY: ("MessageIsAlreadySent",)},
    "stale_message_id": {_ANY: ("StaleMessageId",)},
    "replayed_request": {_ANY: ("InvalidContent",)},
    "message_too_large": {_ANY: ("AttachmentSizeLimitExceeded",)},
    "unsupported_media_type": {_ANY: ("InvalidContent",)},
    "quota_exceeded": {_ANY: ("QuoteLimitExceeded",)},
    "idempotency_key_reused": {_ANY: ("InvalidContent",)},
    "conflict": {_ANY: ("InvalidContent",)},
    "provider_failure": {_ANY: ("SMEVFailure",)},
    "internal": {_ANY: ("SMEVFailure",)},
}
"""Stable code (and reason) -> the 1.1 fault elements that say it, most precise first."""

_SIGNATURE_CODES: Final[Mapping[str, SignatureFaultCode]] = {
    "certificate_untrusted": SignatureFaultCode.CERTIFICATE_IS_NOT_FOUND,
    "certificate_expired": SignatureFaultCode.CERTIFICATE_IS_EXPIRED,
}
_SIGNATURE_REASONS: Final[Mapping[str, SignatureFaultCode]] = {
    "missing": SignatureFaultCode.NO_SIGNATURE_FOUND,
    "reserved_id": SignatureFaultCode.INCORRECT_SIGNATURE_TARGET,
    "not_the_bus": SignatureFaultCode.INCORRECT_SIGNATURE_TARGET,
}


@dataclass(frozen=True)
class NamedFault:
    """What a SOAP Fault on ``/ws`` carries for one error of one operation."""

    element: str
    """Local name of the fault element (namespace ``.../types/faults/1.1``)."""
    code: str
    """The stable code (``gateway.core.errors``)."""
    origin: Origin
    soap_faultcode: SoapFaultCode
    """The error class's ``soap:Client`` / ``soap:Server``."""
    message: str
    carries_code: bool
    """The element's type extends ``SmevFault``: it holds ``Code`` and ``Description``."""
    signature_code: SignatureFaultCode | None = None
    validation_errors: tuple[tuple[int, str], ...] = ()
    """``InvalidContent/ValidationError``: (errorPosition = line, 0 when unknown; words)."""
    rejected_root: tuple[str, str] = ("", "")
    """``BusinessDataTypeIsNotSupported``: (namespace URI, local name) of the content root."""
    limit: int = 0
    """Bytes allowed (``AttachmentSizeLimitExceeded``) or left (``QuoteLimitExceeded``)."""
    size: int = 0
    """Bytes sent (``AttachmentSizeLimitExceeded``, ``QuoteLimitExceeded``)."""
    destination: str = ""
    """The full queue (``DestinationOverflow``)."""

    @property
    def faultcode(self) -> str:
        """SOAP 1.1 faultcode refined with the stable code: ``soap:Client.schema_violation``."""
        return f"{self.soap_faultcode}.{self.code}"


def fault_element(
    code: str,
    origin: Origin,
    reason: object,
    operation: Operation | None,
    *,
    transient: bool = False,
) -> str:
    """The name of the fault element for ``code`` (with ``reason``) on ``operation``.

    ``operation=None``: the request was refused before its operation was known (wrong
    media type, body too large, not a SOAP envelope); only the faults every operation
    declares are candidates.
    """
    declared = OPERATION_FAULTS[operation] if operation is not None else _COMMON
    by_reason = FAULT_TABLE.get(code, {})
    candidates = by_reason.get(str(reason), ()) if reason is not None else ()
    for name in (*candidates, *by_reason.get(_ANY, ())):
        if name in declared:
            return name
    return "InvalidContent" if origin is Origin.CLIENT and not transient else "SMEVFailure"


def named_fault(error: SmevbusError, operation: Operation | None) -> NamedFault:
    """The named fault ``error`` becomes on ``operation`` (``None``: not known yet)."""
    detail: Mapping[str, Any] = error.detail
    element = fault_element(
        error.code, error.origin, detail.get("reason"), operation, transient=error.transient
    )
    signature_code = None
    if element == "SignatureVerificationFault":
        signature_code = _SIGNATURE_CODES.get(error.code) or _SIGNATURE_REASONS.get(
            str(detail.get("reason")), SignatureFaultCode.SIGNATURE_IS_INVALID
        )
    root = detail.get("namespace"), detail.get("root")
    return NamedFault(
        element=element,
        code=error.code,
        origin=error.origin,
        soap_faultcode=error.soap_faultcode,
        message=error.message,
        carries_code=element in _SMEV_FAULT_TYPED,
        signature_code=signature_code,
        validation_errors=_validation_errors(error) if element == "InvalidContent" else (),
        rejected_root=(str(root[0] or ""), str(root[1] or "")),
        limit=_int(detail.get("limit")),
        size=_int(detail.get("size")),
        destination=str(detail.get("queue") or ""),
    )


def _int(value: object) -> int:
    return value if isinstance(value, int) and not isinstance(value, bool) else 0


def _validation_errors(error: SmevbusError) -> tuple[tuple[int, str], ...]:
    """libxml2's errors of a schema violation, else the error's own line and message."""
    listed = error.detail.get("errors")
    if isinstance(listed, list) and listed:
        return tuple(
            (e["line"] if isinstance(e.get("line"), int) else 0, str(e.get("message", "")))
            for e in listed
            if isinstance(e, dict)
        ) or ((0, error.message),)
    line = error.detail.get("line")
    return ((line if isinstance(line, int) else 0, error.message),)
