"""Any error as a SOAP 1.1 Fault envelope (the serialization of gateway.core.faults)."""

from __future__ import annotations

from gateway.core.faults import fault_of
from gateway.xml.soap import build_fault


def soap_fault(error: BaseException) -> bytes:
    """``soap:Client`` for the client's faults, ``soap:Server`` otherwise; BusFault detail."""
    fault = fault_of(error)
    return build_fault(
        "soap:Client" if fault.soap_faultcode == "soap:Client" else "soap:Server",
        fault.message,
        fault.code,
        str(fault.origin),
        fault.message,
    )
