"""Pure mapping between the bus MVD message types and the migration service's native XML.

No I/O here: bus request element -> native ``<Query>``, native ``<Answer>`` -> bus
response element or "no such record". The adapter (:mod:`.adapter`) does the HTTP call.

Bus types:

* ``urn://smevbus/types/mvd/passport-validity/1.0`` <-> ``<PassportCheck>`` /
  ``<PassportStatus>``;
* ``urn://smevbus/types/mvd/residence-registration/1.0`` <-> ``<ResidenceLookup>`` /
  ``<Residences>``.

Status mapping: ``D`` -> ``VALID``; ``N`` with reason 01 (lost) or 02 (stolen) ->
``LOST``, 03 -> ``EXPIRED``, any other reason -> ``INVALID``; ``U`` -> no record (the
adapter rejects with ``NO_DATA``, as the conformance kit requires for an unknown
record). ``personKnown="false"`` -> no record (``NO_DATA``); a known person with no
registration (of the requested kind) -> the bus's ``<RecordNotFound>`` content.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date
from typing import Any, Final

from lxml import etree

from adapters.mvd_migration.native import (
    REASON_TEXT,
    ReasonCode,
    RegType,
    StatusCode,
    passport_check,
    q,
    residence_lookup,
)
from gateway.xml.text import find_text

PASSPORT: Final = "urn://smevbus/types/mvd/passport-validity/1.0"
RESIDENCE: Final = "urn://smevbus/types/mvd/residence-registration/1.0"

#: Native reason code -> bus passport status for ``StatusCode`` N.
REASON_STATUS: Final[dict[ReasonCode, str]] = {
    ReasonCode.LOST: "LOST",
    ReasonCode.STOLEN: "LOST",
    ReasonCode.EXPIRED: "EXPIRED",
}
#: Native registration type -> bus ``RegistrationKindType``.
REG_KIND: Final[dict[RegType, str]] = {RegType.PERMANENT: "RESIDENCE", RegType.TEMPORARY: "STAY"}
#: Prefix of a city in the native ``Locality`` ("г. Тула"); the bus ``City`` is bare.
CITY_PREFIX: Final = "г. "
#: Longest ``system`` attribute the native schema allows.
MAX_SYSTEM: Final = 20


class MappingError(ValueError):
    """A native answer the adapter cannot map (wrong kind, missing parts)."""


@dataclass(frozen=True)
class NoRecord:
    """The agency has no such record; the adapter answers ``NO_DATA``."""

    description: str


class BadRequest(ValueError):
    """The bus request cannot be put to the agency (e.g. a lookup without passport)."""


def _default_ns(ns: str) -> dict[Any, str]:
    # lxml-stubs type nsmap keys as str only; None is the default namespace.
    return {None: ns}


def _b(ns: str, local: str) -> str:
    return f"{{{ns}}}{local}"


def _text(parent: etree._Element, path: str) -> str | None:
    value = find_text(parent, path)
    return value.strip() if value is not None else None


def _sub(parent: etree._Element, ns: str, local: str, text: str | None) -> None:
    if text is not None:
        etree.SubElement(parent, _b(ns, local)).text = text


def _date(text: str | None) -> date | None:
    return date.fromisoformat(text[:10]) if text else None


# --- bus request -> native query ------------------------------------------------------


def passport_query(
    request: etree._Element, *, query_id: str | None = None, system: str | None = None
) -> etree._Element:
    """``<PassportValidityRequest>`` -> ``<Query><PassportCheck>``."""
    p = f"{{{PASSPORT}}}Passport/{{{PASSPORT}}}"
    series, number = _text(request, p + "Series"), _text(request, p + "Number")
    if not series or not number:
        raise BadRequest("the request names no passport series and number")
    return passport_check(
        series,
        number,
        _date(_text(request, p + "IssueDate")),
        query_id=query_id,
        system=system[:MAX_SYSTEM] if system else None,
    )


def residence_query(
    request: etree._Element, *, query_id: str | None = None, system: str | None = None
) -> etree._Element:
    """``<ResidenceRegistrationRequest>`` -> ``<Query><ResidenceLookup>``.

    The migration service finds a person only by name, birth date *and* passport; a
    request without ``Passport`` raises :class:`BadRequest`.
    """
    person = f"{{{RESIDENCE}}}Person/{{{RESIDENCE}}}"
    passport = f"{{{RESIDENCE}}}Passport/{{{RESIDENCE}}}"
    series, number = _text(request, passport + "Series"), _text(request, passport + "Number")
    if not series or not number:
        raise BadRequest(
            "the migration service looks a person up by passport: the request has none"
        )
    surname, given = _text(request, person + "LastName"), _text(request, person + "FirstName")
    born = _date(_text(request, person + "BirthDate"))
    if not surname or not given or born is None:
        raise BadRequest("the request names no person (last and first name, birth date)")
    return residence_lookup(
        surname,
        given,
        _text(request, person + "MiddleName"),
        born,
        series,
        number,
        query_id=query_id,
        system=system[:MAX_SYSTEM] if system else None,
    )


def requested_kind(request: etree._Element) -> str | None:
    """The ``Kind`` filter of a residence request (``RESIDENCE`` / ``STAY``), if any."""
    return _text(request, f"{{{RESIDENCE}}}Kind")


# --- native answer -> bus response ----------------------------------------------------


def _answer_part(answer: etree._Element, local: str) -> etree._Element:
    part = answer.find(q(local))
    if part is None:
        got = [etree.QName(child).localname for child in answer]
        raise MappingError(f"expected <{local}> in the agency's answer, got {got}")
    return part


def passport_status(status_code: StatusCode, reason: ReasonCode | None) -> str:
    """Bus ``PassportStatusType`` of a known passport (not for ``U``)."""
    if status_code is StatusCode.VALID:
        return "VALID"
    if status_code is StatusCode.INVALID:
        return REASON_STATUS.get(reason, "INVALID") if reason is not None else "INVALID"
    raise MappingError(f"status {status_code.value} has no bus passport status")


def passport_response(answer: etree._Element) -> etree._Element | NoRecord:
    """Native ``<Answer><PassportStatus>`` -> ``<PassportValidityResponse>`` or NoRecord."""
    status = _answer_part(answer, "PassportStatus")
    code = StatusCode(_text(status, q("StatusCode")) or "")
    series, number = _text(status, q("DocSeries")), _text(status, q("DocNumber"))
    if code is StatusCode.UNKNOWN:
        return NoRecord(f"the migration service knows no passport {series} {number}")
    reason_text = _text(status, q("ReasonCode"))
    reason = ReasonCode(reason_text) if reason_text else None
    ns = PASSPORT
    root = etree.Element(_b(ns, "PassportValidityResponse"), nsmap=_default_ns(ns))
    passport = etree.SubElement(root, _b(ns, "Passport"))
    _sub(passport, ns, "Series", series)
    _sub(passport, ns, "Number", number)
    _sub(passport, ns, "IssueDate", _text(status, q("DocIssued")))
    _sub(passport, ns, "IssuerCode", _text(status, q("IssuerCode")))
    _sub(passport, ns, "IssuerName", _text(status, q("IssuerName")))
    _sub(root, ns, "Status", passport_status(code, reason))
    _sub(root, ns, "StatusDate", _text(status, q("InvalidSince")))
    if code is StatusCode.INVALID:
        explained = _text(status, q("ReasonText")) or (REASON_TEXT[reason] if reason else None)
        _sub(root, ns, "InvalidityReason", explained)
    return root


def city(locality: str) -> str:
    """Bus ``City`` of a native ``Locality``: a city's "г. " prefix dropped, else as is."""
    bare = locality.removeprefix(CITY_PREFIX).strip()
    return bare or locality


def _address(parent: etree._Element, native: etree._Element) -> None:
    ns = RESIDENCE
    address = etree.SubElement(parent, _b(ns, "Address"))
    _sub(address, ns, "PostalCode", _text(native, q("PostIndex")))
    _sub(address, ns, "RegionCode", _text(native, q("RegionCode")))
    _sub(address, ns, "Region", _text(native, q("RegionName")))
    _sub(address, ns, "District", _text(native, q("Area")))
    locality = _text(native, q("Locality"))
    _sub(address, ns, "City", city(locality) if locality else None)
    _sub(address, ns, "Street", _text(native, q("Street")))
    _sub(address, ns, "House", _text(native, q("House")))
    _sub(address, ns, "Building", _text(native, q("Korpus")))
    _sub(address, ns, "Flat", _text(native, q("Flat")))


def residence_response(
    answer: etree._Element, kind: str | None = None
) -> etree._Element | NoRecord:
    """Native ``<Answer><Residences>`` -> ``<ResidenceRegistrationResponse>`` or NoRecord.

    ``kind`` (``RESIDENCE`` / ``STAY``) keeps only registrations of that kind. An unknown
    person is :class:`NoRecord`; a known one without (matching) registrations is
    answered with ``<RecordNotFound>``.
    """
    residences = _answer_part(answer, "Residences")
    if residences.get("personKnown") not in ("true", "1"):
        return NoRecord("the migration service knows no such person with this passport")
    ns = RESIDENCE
    root = etree.Element(_b(ns, "ResidenceRegistrationResponse"), nsmap=_default_ns(ns))
    for native in residences.iterfind(q("Residence")):
        bus_kind = REG_KIND[RegType(_text(native, q("RegType")) or "")]
        if kind is not None and bus_kind != kind:
            continue
        native_address = native.find(q("Address"))
        if native_address is None:
            raise MappingError("a <Residence> of the agency's answer has no <Address>")
        registration = etree.SubElement(root, _b(ns, "Registration"))
        _sub(registration, ns, "Kind", bus_kind)
        _address(registration, native_address)
        _sub(registration, ns, "RegisteredFrom", _text(native, q("RegFrom")))
        _sub(registration, ns, "RegisteredTill", _text(native, q("RegUntil")))
        _sub(registration, ns, "DeregisteredOn", _text(native, q("DeregDate")))
        _sub(registration, ns, "AuthorityCode", _text(native, q("DeptCode")))
    if len(root) == 0:
        what = f"of kind {kind} " if kind else ""
        _sub(root, ns, "RecordNotFound", f"the person has no registration {what}on record")
    return root
