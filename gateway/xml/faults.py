"""Any error as a SOAP 1.1 Fault envelope when the operation is not known yet."""

from __future__ import annotations

from gateway.xml.smev_faults import smev_fault


def soap_fault(error: BaseException) -> bytes:
    """A fault every 1.1 operation declares (``InvalidContent``, ``SMEVFailure``, ...),
    for a request refused before its operation was read (wrong media type, too large)."""
    return smev_fault(error, None)
