"""The one place errors become what a client sees: SOAP 1.1 Faults and problem+json.

Client-caused errors are ``soap:Client`` faults and 4xx statuses; bus and provider
faults are ``soap:Server`` faults and 5xx statuses, which tells a client whether a
retry of the same message can help. Both come from the error's class
(:mod:`gateway.core.errors`), where each code declares them once.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from gateway.core.errors import InternalError, Origin, SmevbusError, SoapFaultCode

PROBLEM_TYPE_BASE = "urn:smevbus:error:"


@dataclass(frozen=True)
class Fault:
    """A transport-neutral view of an error, ready to serialize."""

    code: str
    origin: Origin
    message: str
    transient: bool
    http_status: int
    soap_faultcode: SoapFaultCode
    detail: dict[str, Any]


def fault_of(error: BaseException) -> Fault:
    """Describe any exception; unknown ones become ``internal`` without leaking details."""
    if not isinstance(error, SmevbusError):
        error = InternalError("the bus failed to process the message; retry later")
    return Fault(
        code=error.code,
        origin=error.origin,
        message=error.message,
        transient=error.transient,
        http_status=error.http_status,
        soap_faultcode=error.soap_faultcode,
        detail={k: v for k, v in error.detail.items() if _is_plain(v)},
    )


def problem_json(error: BaseException, *, instance: str | None = None) -> dict[str, Any]:
    """RFC 9457 problem details for the REST API."""
    fault = fault_of(error)
    body: dict[str, Any] = {
        "type": PROBLEM_TYPE_BASE + fault.code,
        "title": fault.code.replace("_", " "),
        "status": fault.http_status,
        "detail": fault.message,
        "code": fault.code,
        "origin": str(fault.origin),
        "transient": fault.transient,
    }
    if instance:
        body["instance"] = instance
    if fault.detail:
        body["context"] = fault.detail
    return body


def _is_plain(value: object) -> bool:
    return (
        isinstance(value, str | int | float | bool)
        or value is None
        or (isinstance(value, list | tuple) and all(_is_plain(v) for v in value))
    )
