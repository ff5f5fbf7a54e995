"""The MVD migration service's native XML interface: namespace, schema, codes, queries.

Both the mock service and the MVD adapter speak this; nothing here knows the bus
message types. The schema is compiled once per process with a parser that never
touches the network.
"""

from __future__ import annotations

import functools
from datetime import date
from enum import StrEnum
from pathlib import Path
from typing import Any, Final

from lxml import etree

from adapters.sdk import native_xml
from adapters.sdk.native_xml import CONTENT_TYPE as CONTENT_TYPE  # re-exported
from adapters.sdk.native_xml import to_bytes as to_bytes
from gateway.xml.schema import CompiledSchema

NS: Final = "urn://mvd.example/migration/1.0"
"""Target namespace of the native schema."""
SCHEMA_FILE: Final = Path("agencies") / "mvd_migration" / "mvd-migration-1.0.xsd"
# The native documents use NS as the default namespace; lxml-stubs type nsmap keys as
# str only, so the None key (default namespace) needs the Any.
NSMAP: Final[dict[Any, str]] = {None: NS}


def q(local: str) -> str:
    """Clark name ``{NS}local`` of a native element."""
    return f"{{{NS}}}{local}"


class StatusCode(StrEnum):
    """Passport status as the legacy system reports it."""

    VALID = "D"  # действителен
    INVALID = "N"  # недействителен, see ReasonCode
    UNKNOWN = "U"  # нет сведений


class ReasonCode(StrEnum):
    """Why a passport is invalid (only with :attr:`StatusCode.INVALID`)."""

    LOST = "01"
    STOLEN = "02"
    EXPIRED = "03"
    REPLACED = "04"
    HOLDER_DECEASED = "05"
    INVALID_BLANK = "06"


REASON_TEXT: Final[dict[ReasonCode, str]] = {
    ReasonCode.LOST: "Утрачен",
    ReasonCode.STOLEN: "Похищен",
    ReasonCode.EXPIRED: "Истёк срок действия",
    ReasonCode.REPLACED: "Заменён в связи с выдачей нового паспорта",
    ReasonCode.HOLDER_DECEASED: "Смерть владельца",
    ReasonCode.INVALID_BLANK: "Оформлен на бланке, признанном недействительным",
}


class RegType(StrEnum):
    """Kind of registration."""

    PERMANENT = "P"  # по месту жительства
    TEMPORARY = "T"  # по месту пребывания


class ErrorCode(StrEnum):
    """``<Error code=...>`` values and the HTTP status each comes with."""

    FORMAT_ERROR = "FORMAT_ERROR"
    SYSTEM_ERROR = "SYSTEM_ERROR"
    SERVICE_UNAVAILABLE = "SERVICE_UNAVAILABLE"

    @property
    def http_status(self) -> int:
        return {"FORMAT_ERROR": 400, "SYSTEM_ERROR": 500, "SERVICE_UNAVAILABLE": 503}[self.value]


def schema_path(directory: str | Path | None = None) -> Path:
    """Path of the native XSD under the repo's ``xsd/`` (or ``directory``)."""
    return native_xml.schema_path(SCHEMA_FILE, directory)


@functools.cache
def native_schema(directory: str | Path | None = None) -> CompiledSchema:
    """The compiled native schema; ``.validate(el, what)`` raises SchemaViolation."""
    return native_xml.compiled_schema(schema_path(directory))


def _sub(parent: etree._Element, local: str, text: str | None) -> None:
    if text is not None:
        etree.SubElement(parent, q(local)).text = text


def _query(query_id: str | None, system: str | None) -> etree._Element:
    root = etree.Element(q("Query"), nsmap=NSMAP)
    if query_id is not None:
        root.set("queryId", query_id)
    if system is not None:
        root.set("system", system)
    return root


def passport_check(
    series: str,
    number: str,
    issued: date | None = None,
    *,
    query_id: str | None = None,
    system: str | None = None,
) -> etree._Element:
    """A ``<Query><PassportCheck>`` element."""
    root = _query(query_id, system)
    check = etree.SubElement(root, q("PassportCheck"))
    _sub(check, "DocSeries", series)
    _sub(check, "DocNumber", number)
    _sub(check, "DocIssued", issued.isoformat() if issued else None)
    return root


def residence_lookup(
    surname: str,
    given_name: str,
    patronymic: str | None,
    born: date,
    series: str,
    number: str,
    *,
    query_id: str | None = None,
    system: str | None = None,
) -> etree._Element:
    """A ``<Query><ResidenceLookup>`` element."""
    root = _query(query_id, system)
    lookup = etree.SubElement(root, q("ResidenceLookup"))
    _sub(lookup, "Surname", surname)
    _sub(lookup, "GivenName", given_name)
    _sub(lookup, "Patronymic", patronymic)
    _sub(lookup, "Born", born.isoformat())
    _sub(lookup, "DocSeries", series)
    _sub(lookup, "DocNumber", number)
    return root
