"""Reading a registry SOAP request into a search query, or refusing it with a fault.

The bytes go through :func:`gateway.xml.parse.parse_secure` (no DTD, no entities, no
network, size and depth limits), the Body's one element must be one of the three
requests and valid against the registry XSD, and it must name a person or an act number.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import date
from typing import Any, Literal, cast

from lxml import etree

from adapters.zags.mock.schema import NAMESPACE, compiled_schema
from adapters.zags.mock.search import BirthQuery, DeathQuery, MarriageQuery, PersonKey, Query
from gateway.core.errors import SmevbusError
from gateway.xml.parse import parse_secure
from gateway.xml.text import text_of

SOAP11_ENV = "http://schemas.xmlsoap.org/soap/envelope/"
MAX_REQUEST_BYTES = 1024 * 1024

FaultCode = Literal["INVALID_REQUEST", "UNKNOWN_OPERATION", "INTERNAL_ERROR"]
Operation = Literal["FindBirthRecord", "FindMarriageRecord", "FindDeathRecord"]
OPERATIONS: tuple[Operation, ...] = ("FindBirthRecord", "FindMarriageRecord", "FindDeathRecord")

_DATE = re.compile(r"^(\d{4}-\d{2}-\d{2})(Z|[+-]\d{2}:\d{2})?$")


class RegistryFault(Exception):
    """A refusal the registry answers with a SOAP Fault (HTTP 500)."""

    def __init__(self, code: FaultCode, message: str) -> None:
        super().__init__(message)
        self.code: FaultCode = code
        self.message = message

    @property
    def soap_code(self) -> Literal["Client", "Server"]:
        """``Server`` for the registry's own failures, ``Client`` for a bad request."""
        return "Server" if self.code == "INTERNAL_ERROR" else "Client"


@dataclass(frozen=True, slots=True)
class RegistryRequest:
    operation: Operation
    request_id: str | None
    query: Query


def read_request(body: bytes) -> RegistryRequest:
    """The operation, caller reference and query of a SOAP 1.1 request, or RegistryFault."""
    try:
        root = parse_secure(body, max_bytes=MAX_REQUEST_BYTES)
    except SmevbusError as exc:
        raise RegistryFault("INVALID_REQUEST", exc.message) from None
    if root.tag != f"{{{SOAP11_ENV}}}Envelope":
        raise RegistryFault("INVALID_REQUEST", "expected a SOAP 1.1 Envelope")
    soap_body = root.find(f"{{{SOAP11_ENV}}}Body")
    elements = [] if soap_body is None else [e for e in soap_body if isinstance(e.tag, str)]
    if len(elements) != 1:
        raise RegistryFault("INVALID_REQUEST", "the SOAP Body must hold exactly one request")
    request = elements[0]
    qname = etree.QName(request)
    operation = qname.localname.removesuffix("Request")
    if qname.namespace != NAMESPACE or operation not in OPERATIONS:
        raise RegistryFault(
            "UNKNOWN_OPERATION",
            f"{qname.text} is not a request of this registry; "
            f"operations are {', '.join(OPERATIONS)}",
        )
    schema = compiled_schema()
    if not schema.validate(request):
        errors = list(cast("Iterable[Any]", schema.error_log))
        first = f"line {errors[0].line}: {errors[0].message}" if errors else "invalid"
        raise RegistryFault("INVALID_REQUEST", f"request violates the registry schema: {first}")
    return _read(request)


def _read(request: etree._Element) -> RegistryRequest:
    request_id = _text(request, "requestId")
    act_number = _text(request, "actNumber")
    operation = etree.QName(request).localname.removesuffix("Request")
    query: Query
    if operation == "FindBirthRecord":
        query = BirthQuery(_key(request, "child"), act_number, _date(request, "actDate"))
        _require(query.child, act_number, "child")
        return RegistryRequest("FindBirthRecord", request_id, query)
    if operation == "FindMarriageRecord":
        husband, wife = _key(request, "husband"), _key(request, "wife")
        query = MarriageQuery(husband, wife, _date(request, "marriageDate"), act_number)
        _require(husband or wife, act_number, "husband or wife")
        return RegistryRequest("FindMarriageRecord", request_id, query)
    query = DeathQuery(_key(request, "deceased"), _date(request, "dateOfDeath"), act_number)
    _require(query.deceased, act_number, "deceased")
    return RegistryRequest("FindDeathRecord", request_id, query)


def _require(person: PersonKey | None, act_number: str | None, what: str) -> None:
    if person is None and act_number is None:
        raise RegistryFault("INVALID_REQUEST", f"give {what}, or actNumber, to search by")


def _child(parent: etree._Element, name: str) -> etree._Element | None:
    return parent.find(f"{{{NAMESPACE}}}{name}")


def _text(parent: etree._Element, name: str) -> str | None:
    element = _child(parent, name)
    return None if element is None else text_of(element).strip()


def _date(parent: etree._Element, name: str) -> date | None:
    text = _text(parent, name)
    if text is None:
        return None
    match = _DATE.match(text)
    try:
        if match is None:
            raise ValueError(text)
        return date.fromisoformat(match.group(1))
    except ValueError:
        raise RegistryFault("INVALID_REQUEST", f"{name} {text!r} is not a date") from None


def _key(parent: etree._Element, name: str) -> PersonKey | None:
    element = _child(parent, name)
    if element is None:
        return None
    return PersonKey(
        surname=_text(element, "surname") or "",
        given_name=_text(element, "givenName") or "",
        patronymic=_text(element, "patronymic"),
        date_of_birth=_date(element, "dateOfBirth"),
    )
