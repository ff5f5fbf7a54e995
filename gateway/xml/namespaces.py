"""Namespace URIs used on the bus, and the prefixes smevbus writes them with.

The four message-exchange namespaces are SMEV 3's own (version 1.1), so an existing
SMEV 3 client can switch its endpoint to the bus. The business message types live
under ``urn://smevbus/types/``; a message type *is* the namespace URI of the root
element of the business content.
"""

from __future__ import annotations

from typing import Final

SOAP_ENV: Final = "http://schemas.xmlsoap.org/soap/envelope/"
"""SOAP 1.1 envelope."""
WSDL: Final = "http://schemas.xmlsoap.org/wsdl/"
WSDL_SOAP: Final = "http://schemas.xmlsoap.org/wsdl/soap/"
XSD: Final = "http://www.w3.org/2001/XMLSchema"
DS: Final = "http://www.w3.org/2000/09/xmldsig#"
"""XML Signature (XMLDSig)."""

_SMEV_BASE = "urn://x-artefacts-smev-gov-ru/services/message-exchange"
SMEV_SERVICE: Final = f"{_SMEV_BASE}/1.1"
"""Target namespace of the WSDL."""
SMEV_TYPES: Final = f"{_SMEV_BASE}/types/1.1"
"""Operation elements (SendRequestRequest, ...)."""
SMEV_BASIC: Final = f"{_SMEV_BASE}/types/basic/1.1"
"""MessagePrimaryContent, MessageTypeSelector, AckTargetMessage, shared simple types."""
SMEV_FAULTS: Final = f"{_SMEV_BASE}/types/faults/1.1"
"""SOAP Fault detail elements (the named faults: InvalidContent, SMEVFailure, ...)."""

ZAGS_BIRTH_RECORD: Final = "urn://smevbus/types/zags/birth-record/1.0"
ZAGS_MARRIAGE_RECORD: Final = "urn://smevbus/types/zags/marriage-record/1.0"
ZAGS_DEATH_RECORD: Final = "urn://smevbus/types/zags/death-record/1.0"
MVD_PASSPORT_VALIDITY: Final = "urn://smevbus/types/mvd/passport-validity/1.0"
MVD_RESIDENCE_REGISTRATION: Final = "urn://smevbus/types/mvd/residence-registration/1.0"
FNS_INN: Final = "urn://smevbus/types/fns/inn/1.0"

MESSAGE_TYPES: Final[tuple[str, ...]] = (
    ZAGS_BIRTH_RECORD,
    ZAGS_MARRIAGE_RECORD,
    ZAGS_DEATH_RECORD,
    MVD_PASSPORT_VALIDITY,
    MVD_RESIDENCE_REGISTRATION,
    FNS_INN,
)
"""The business message types shipped in ``xsd/types/``."""

NSMAP: Final[dict[str, str]] = {
    "soap": SOAP_ENV,
    "ds": DS,
    "smev": SMEV_TYPES,
    "basic": SMEV_BASIC,
    "faults": SMEV_FAULTS,
}
"""Prefix -> URI, for ``xpath(..., namespaces=NSMAP)`` and for building elements."""


def qname(namespace: str, local: str) -> str:
    """Clark notation ``{namespace}local`` as lxml uses for tags."""
    return f"{{{namespace}}}{local}"
