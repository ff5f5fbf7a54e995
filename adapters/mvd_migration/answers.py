"""How the mock migration service answers a (schema-valid) ``<Query>`` from its data set.

Pure functions from elements to elements: no I/O, and the answer time is passed in.
"""

from __future__ import annotations

from datetime import date, datetime

from lxml import etree

from adapters.mvd_migration.dataset import Address, Dataset, Passport, Residence
from adapters.mvd_migration.native import NSMAP, REASON_TEXT, ErrorCode, StatusCode, q
from gateway.xml.text import find_text


def _answer(query_id: str | None, now: datetime | None) -> etree._Element:
    root = etree.Element(q("Answer"), nsmap=NSMAP)
    if query_id:
        root.set("queryId", query_id)
    if now is not None:
        root.set("answeredAt", now.isoformat(timespec="seconds"))
    return root


def _sub(parent: etree._Element, local: str, value: str | date | None) -> None:
    if value is not None:
        text = value.isoformat() if isinstance(value, date) else value
        etree.SubElement(parent, q(local)).text = text


def _xs_date(text: str | None) -> date | None:
    """An xs:date's day, ignoring a timezone suffix; None for what Python cannot hold
    (years beyond 9999, BCE), which no record matches."""
    try:
        return date.fromisoformat(text[:10]) if text else None
    except ValueError:
        return None


def error_answer(
    code: ErrorCode, message: str, *, query_id: str | None = None, now: datetime | None = None
) -> etree._Element:
    """``<Answer><Error code=...>message</Error></Answer>``."""
    root = _answer(query_id, now)
    error = etree.SubElement(root, q("Error"), code=code.value)
    error.text = message
    return root


def _passport_status(parent: etree._Element, check: etree._Element, dataset: Dataset) -> None:
    series = find_text(check, q("DocSeries"), "")
    number = find_text(check, q("DocNumber"), "")
    issued_text = find_text(check, q("DocIssued"))
    passport = dataset.passport(series, number)
    if (
        passport is not None
        and issued_text is not None
        and _xs_date(issued_text) != passport.issued
    ):
        passport = None  # same series and number, other issue date: not this passport
    status = etree.SubElement(parent, q("PassportStatus"))
    _sub(status, "DocSeries", series)
    _sub(status, "DocNumber", number)
    if passport is None:
        _sub(status, "StatusCode", StatusCode.UNKNOWN.value)
        return
    _fill_passport(status, passport)


def _fill_passport(status: etree._Element, passport: Passport) -> None:
    _sub(status, "StatusCode", passport.status.value)
    _sub(status, "DocIssued", passport.issued)
    _sub(status, "IssuerCode", passport.issuer_code)
    _sub(status, "IssuerName", passport.issuer_name)
    if passport.reason is not None:
        _sub(status, "ReasonCode", passport.reason.value)
        _sub(status, "ReasonText", REASON_TEXT[passport.reason])
    _sub(status, "InvalidSince", passport.invalid_since)


def _address(parent: etree._Element, address: Address) -> None:
    el = etree.SubElement(parent, q("Address"))
    _sub(el, "PostIndex", address.post_index)
    _sub(el, "RegionCode", address.region_code)
    _sub(el, "RegionName", address.region_name)
    _sub(el, "Area", address.area)
    _sub(el, "Locality", address.locality)
    _sub(el, "Street", address.street)
    _sub(el, "House", address.house)
    _sub(el, "Korpus", address.korpus)
    _sub(el, "Flat", address.flat)


def _residence(parent: etree._Element, residence: Residence) -> None:
    el = etree.SubElement(parent, q("Residence"))
    _sub(el, "RegType", residence.reg_type.value)
    _address(el, residence.address)
    _sub(el, "RegFrom", residence.reg_from)
    _sub(el, "RegUntil", residence.reg_until)
    _sub(el, "DeregDate", residence.dereg_date)
    _sub(el, "DeptCode", residence.dept_code)


def _residences(parent: etree._Element, lookup: etree._Element, dataset: Dataset) -> None:
    born = _xs_date(find_text(lookup, q("Born")))
    person = (
        dataset.person(
            surname=find_text(lookup, q("Surname"), ""),
            given_name=find_text(lookup, q("GivenName"), ""),
            patronymic=find_text(lookup, q("Patronymic")),
            born=born,
            series=find_text(lookup, q("DocSeries"), ""),
            number=find_text(lookup, q("DocNumber"), ""),
        )
        if born
        else None
    )
    el = etree.SubElement(parent, q("Residences"), personKnown="true" if person else "false")
    # Current registrations first, then past ones; newest first within each.
    ordered = sorted(
        person.residences if person else (),
        key=lambda r: (r.dereg_date is not None, -r.reg_from.toordinal()),
    )
    for residence in ordered:
        _residence(el, residence)


def answer_query(
    query: etree._Element, dataset: Dataset, *, now: datetime | None = None
) -> etree._Element:
    """The ``<Answer>`` to a schema-valid ``<Query>``."""
    root = _answer(query.get("queryId"), now)
    check = query.find(q("PassportCheck"))
    if check is not None:
        _passport_status(root, check, dataset)
        return root
    lookup = query.find(q("ResidenceLookup"))
    if lookup is None:  # the schema makes this unreachable
        raise ValueError("query holds neither PassportCheck nor ResidenceLookup")
    _residences(root, lookup, dataset)
    return root
