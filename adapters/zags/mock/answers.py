"""Writing the registry's SOAP answers: act record lists, faults, and a broken reply.

Answers are built with lxml in the registry namespace and are valid against
``zags-registry-1.0.xsd`` (the tests check every record of the data set).
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import date

from lxml import etree

from adapters.zags.mock.dataset import (
    BirthAct,
    Certificate,
    DeathAct,
    MarriageAct,
    Office,
    Person,
    Spouse,
)
from adapters.zags.mock.queries import SOAP11_ENV, Operation, RegistryFault
from adapters.zags.mock.schema import NAMESPACE

_NSMAP = {"soap": SOAP11_ENV, "zr": NAMESPACE}
_ACT_ELEMENT: dict[Operation, str] = {
    "FindBirthRecord": "birthAct",
    "FindMarriageRecord": "marriageAct",
    "FindDeathRecord": "deathAct",
}

MALFORMED_REPLY = (
    b'<?xml version="1.0" encoding="UTF-8"?>\n'
    b'<soap:Envelope xmlns:soap="' + SOAP11_ENV.encode() + b'">'
    b'<soap:Body><zr:FindBirthRecordResponse xmlns:zr="' + NAMESPACE.encode() + b'">'
    b"<zr:totalFound>1</zr:totalFound><zr:birthAct><zr:actNumber>12019"
)
"""A reply cut off mid-element: what a registry that crashes while writing sends."""


def _el(parent: etree._Element, name: str, text: str | date | None = None) -> etree._Element:
    element = etree.SubElement(parent, f"{{{NAMESPACE}}}{name}")
    if text is not None:
        element.text = text.isoformat() if isinstance(text, date) else text
    return element


def _opt(parent: etree._Element, name: str, text: str | date | None) -> None:
    if text is not None:
        _el(parent, name, text)


def _envelope() -> tuple[etree._Element, etree._Element]:
    envelope = etree.Element(f"{{{SOAP11_ENV}}}Envelope", nsmap=_NSMAP)
    body = etree.SubElement(envelope, f"{{{SOAP11_ENV}}}Body")
    return envelope, body


def _serialize(envelope: etree._Element) -> bytes:
    return etree.tostring(envelope, xml_declaration=True, encoding="UTF-8")


def _header(parent: etree._Element, act_number: str, act_date: date, office: Office) -> None:
    _el(parent, "actNumber", act_number)
    _el(parent, "actDate", act_date)
    _el(parent, "officeCode", office.code)
    _el(parent, "officeName", office.name)


def _person(parent: etree._Element, name: str, person: Person) -> None:
    element = _el(parent, name)
    _el(element, "surname", person.surname)
    _el(element, "givenName", person.given_name)
    _opt(element, "patronymic", person.patronymic)
    _el(element, "sex", person.sex)
    _el(element, "dateOfBirth", person.date_of_birth)
    _opt(element, "placeOfBirth", person.place_of_birth)
    _opt(element, "citizenship", person.citizenship)


def _spouse(parent: etree._Element, name: str, spouse: Spouse) -> None:
    element = _el(parent, name)
    _el(element, "surnameBefore", spouse.surname_before)
    _el(element, "surnameAfter", spouse.surname_after)
    _el(element, "givenName", spouse.given_name)
    _opt(element, "patronymic", spouse.patronymic)
    _el(element, "dateOfBirth", spouse.date_of_birth)
    _opt(element, "placeOfBirth", spouse.place_of_birth)
    _opt(element, "citizenship", spouse.citizenship)


def _certificate(parent: etree._Element, certificate: Certificate | None) -> None:
    if certificate is not None:
        element = _el(parent, "certificate")
        _el(element, "series", certificate.series)
        _el(element, "number", certificate.number)
        _el(element, "issueDate", certificate.issue_date)


def _act(parent: etree._Element, name: str, act: BirthAct | MarriageAct | DeathAct) -> None:
    element = _el(parent, name)
    _header(element, act.act_number, act.act_date, act.office)
    if isinstance(act, BirthAct):
        _person(element, "child", act.child)
        if act.mother is not None:
            _person(element, "mother", act.mother)
        if act.father is not None:
            _person(element, "father", act.father)
    elif isinstance(act, MarriageAct):
        _el(element, "marriageDate", act.marriage_date)
        _spouse(element, "husband", act.husband)
        _spouse(element, "wife", act.wife)
        _opt(element, "divorceDate", act.divorce_date)
    else:
        _person(element, "deceased", act.deceased)
        _el(element, "dateOfDeath", act.date_of_death)
        _el(element, "placeOfDeath", act.place_of_death)
    _certificate(element, act.certificate)


def search_response(
    operation: Operation,
    request_id: str | None,
    acts: Sequence[BirthAct | MarriageAct | DeathAct],
) -> bytes:
    """``<operation>Response`` listing ``acts`` (none: ``totalFound`` 0), in an envelope."""
    envelope, body = _envelope()
    response = _el(body, f"{operation}Response")
    _opt(response, "requestId", request_id)
    _el(response, "totalFound", str(len(acts)))
    for act in acts:
        _act(response, _ACT_ELEMENT[operation], act)
    return _serialize(envelope)


def fault_response(fault: RegistryFault) -> bytes:
    """A SOAP 1.1 Fault whose detail is one ``zr:registryFault``."""
    envelope, body = _envelope()
    element = etree.SubElement(body, f"{{{SOAP11_ENV}}}Fault")
    etree.SubElement(element, "faultcode").text = f"soap:{fault.soap_code}"
    etree.SubElement(element, "faultstring").text = fault.message
    detail = etree.SubElement(element, "detail")
    registry_fault = _el(detail, "registryFault")
    _el(registry_fault, "code", fault.code)
    _el(registry_fault, "message", fault.message)
    return _serialize(envelope)
