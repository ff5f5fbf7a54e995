"""Pure mapping between the bus INN type and the FNS service's native XML.

No I/O here: bus ``<InnRequest>`` -> native ``<InnQuery>``, native ``<InnReply>`` ->
bus ``<InnResponse>`` or "no such taxpayer". The adapter (:mod:`.adapter`) does the
HTTP call and turns ``<Fault>`` into the kit's errors.

* names -> ``<FIO>`` (``Familiya``, ``Imya``, ``Otchestvo``); ``BirthDate`` ->
  ``DataRozhd``; ``Passport`` series ``7011`` and number ``123456`` ->
  ``<Doc kod="21">70 11 123456</Doc>`` (the passport's ``IssueDate`` is not asked);
* ``<Inn taxOffice=".." assigned="..">`` -> ``Inn``, ``TaxAuthorityCode``,
  ``AssignmentDate``;
* ``<NotFound/>`` -> :class:`NoRecord` (the adapter rejects with ``NO_DATA``, as the
  conformance kit requires for an unknown record).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date
from typing import Any, Final

from lxml import etree

from adapters.fns.native import inn_query, q
from gateway.xml.text import find_text, text_of

INN: Final = "urn://smevbus/types/fns/inn/1.0"
"""The bus message type FNS provides (``xsd/types/fns-inn.xsd``)."""


class MappingError(ValueError):
    """A native reply the adapter cannot map (wrong kind, missing parts)."""


class BadRequest(ValueError):
    """The bus request cannot be put to the tax service."""


@dataclass(frozen=True)
class NoRecord:
    """The tax service has no such taxpayer; the adapter answers ``NO_DATA``."""

    description: str


def _b(local: str) -> str:
    return f"{{{INN}}}{local}"


def _text(parent: etree._Element, path: str) -> str | None:
    value = find_text(parent, path)
    return value.strip() if value is not None else None


def query(request: etree._Element, *, query_id: str | None = None) -> etree._Element:
    """Bus ``<InnRequest>`` (already valid against its XSD) -> native ``<InnQuery>``."""
    surname, given = _text(request, _b("LastName")), _text(request, _b("FirstName"))
    born = _text(request, _b("BirthDate"))
    passport = f"{_b('Passport')}/"
    series = _text(request, passport + _b("Series"))
    number = _text(request, passport + _b("Number"))
    if not (surname and given and born and series and number):
        raise BadRequest("the request names no person (names, birth date, passport)")
    try:
        birth_date = date.fromisoformat(born[:10])
    except ValueError as exc:
        raise BadRequest(f"birth date {born!r} is not a calendar date") from exc
    return inn_query(
        surname,
        given,
        _text(request, _b("MiddleName")),
        birth_date,
        series,
        number,
        query_id=query_id,
    )


def response(reply: etree._Element) -> etree._Element | NoRecord:
    """Native ``<InnReply>`` with ``<Inn>`` or ``<NotFound/>`` -> bus ``<InnResponse>``."""
    if reply.find(q("NotFound")) is not None:
        return NoRecord("the tax service has no taxpayer with these names and passport")
    inn = reply.find(q("Inn"))
    if inn is None:
        got = [etree.QName(child).localname for child in reply]
        raise MappingError(f"expected <Inn> or <NotFound/> in the reply, got {got}")
    nsmap: dict[Any, str] = {None: INN}  # lxml-stubs: None is the default namespace
    root = etree.Element(_b("InnResponse"), nsmap=nsmap)
    etree.SubElement(root, _b("Inn")).text = text_of(inn).strip()
    for attribute, local in (("taxOffice", "TaxAuthorityCode"), ("assigned", "AssignmentDate")):
        value = inn.get(attribute)
        if value:
            etree.SubElement(root, _b(local)).text = value
    return root
