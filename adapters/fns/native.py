"""The FNS INN service's native XML interface: namespace, schema, fault codes, queries.

Both the mock service and the FNS adapter speak this; nothing here knows the bus
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

NS: Final = "urn://fns.example/inn/1.0"
"""Target namespace of the native schema."""
SCHEMA_FILE: Final = Path("agencies") / "fns" / "fns-inn-1.0.xsd"
PASSPORT_CODE: Final = "21"
"""``Doc/@kod`` of the internal passport of a citizen of Russia (КодВидДок 21)."""
# lxml-stubs type nsmap keys as str only; None is the default namespace.
NSMAP: Final[dict[Any, str]] = {None: NS}


def q(local: str) -> str:
    """Clark name ``{NS}local`` of a native element."""
    return f"{{{NS}}}{local}"


class FaultCode(StrEnum):
    """``<Fault code=...>`` values and the HTTP status each comes with."""

    BAD_QUERY = "BAD_QUERY"
    INTERNAL = "INTERNAL"
    UNAVAILABLE = "UNAVAILABLE"

    @property
    def http_status(self) -> int:
        return {"BAD_QUERY": 400, "INTERNAL": 500, "UNAVAILABLE": 503}[self.value]


def schema_path(directory: str | Path | None = None) -> Path:
    """Path of the native XSD under the repo's ``xsd/`` (or ``directory``)."""
    return native_xml.schema_path(SCHEMA_FILE, directory)


@functools.cache
def native_schema(directory: str | Path | None = None) -> CompiledSchema:
    """The compiled native schema; ``.validate(el, what)`` raises SchemaViolation."""
    return native_xml.compiled_schema(schema_path(directory))


def ser_nom(series: str, number: str) -> str:
    """FNS's spelling of a passport: series ``7011`` and number ``123456`` -> ``70 11 123456``."""
    return f"{series[:2]} {series[2:]} {number}"


def inn_query(
    surname: str,
    given_name: str,
    patronymic: str | None,
    born: date,
    series: str,
    number: str,
    *,
    query_id: str | None = None,
) -> etree._Element:
    """An ``<InnQuery>`` element."""
    root = etree.Element(q("InnQuery"), nsmap=NSMAP)
    if query_id is not None:
        root.set("queryId", query_id)
    fio = etree.SubElement(root, q("FIO"))
    etree.SubElement(fio, q("Familiya")).text = surname
    etree.SubElement(fio, q("Imya")).text = given_name
    if patronymic is not None:
        etree.SubElement(fio, q("Otchestvo")).text = patronymic
    etree.SubElement(root, q("DataRozhd")).text = born.isoformat()
    etree.SubElement(root, q("Doc"), kod=PASSPORT_CODE).text = ser_nom(series, number)
    return root
