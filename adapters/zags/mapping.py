"""Pure mapping between the bus ZAGS record types and the registry's native interface.

Bus side: ``urn://smevbus/types/zags/{birth,marriage,death}-record/1.0`` (lxml elements,
already valid against their XSD). Native side: the keyword arguments of the registry
operations ``FindBirthRecord`` / ``FindMarriageRecord`` / ``FindDeathRecord``
(``xsd/agencies/zags/zags-registry-1.0.xsd``) and the objects zeep returns for their
answers (read here by attribute only, so plain namespaces do in unit tests).

Field correspondence:

=============================  ===================================
bus                            registry
=============================  ===================================
LastName / FirstName           surname / givenName
MiddleName                     patronymic
BirthDate                      dateOfBirth
Gender MALE / FEMALE           sex M / F
BirthPlace                     placeOfBirth
ActRecord/Number, Date         actNumber, actDate
RegistryOffice/Code, Name      officeCode, officeName
LastNameBefore / After         surnameBefore / surnameAfter
DissolutionDate                divorceDate
DeathDate / DeathPlace         dateOfDeath / placeOfDeath
Certificate Series/Number/...  certificate series/number/issueDate
=============================  ===================================

``totalFound`` 0 is not mapped to content: the adapter answers it with a ``NO_DATA``
rejection (what the conformance kit expects for an unknown record). A registry record
that lacks a field the bus type requires raises :class:`UnmappableRecord`.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import date
from typing import Any, Literal

from lxml import etree

from gateway.xml.text import text_of

BIRTH = "urn://smevbus/types/zags/birth-record/1.0"
MARRIAGE = "urn://smevbus/types/zags/marriage-record/1.0"
DEATH = "urn://smevbus/types/zags/death-record/1.0"

Operation = Literal["FindBirthRecord", "FindMarriageRecord", "FindDeathRecord"]

GENDER_OF_SEX = {"M": "MALE", "F": "FEMALE"}
SEX_OF_GENDER = {v: k for k, v in GENDER_OF_SEX.items()}


class UnmappableRecord(ValueError):
    """A registry record the bus type cannot carry (a required field is missing)."""


@dataclass(frozen=True)
class NativeQuery:
    """One registry call: the operation and its keyword arguments for zeep."""

    operation: Operation
    arguments: dict[str, Any]


@dataclass(frozen=True)
class TypeMapping:
    """How one bus type maps: its operation, request reader, act list and record writer."""

    message_type: str
    operation: Operation
    acts_field: str
    response_tag: str
    record_tag: str
    query: Callable[[etree._Element, str | None], NativeQuery]
    write: Callable[[etree._Element, Any], None]


# --- bus request -> native search keys -------------------------------------------------


def _text(parent: etree._Element, ns: str, path: str) -> str | None:
    found = parent.find("/".join(f"{{{ns}}}{step}" for step in path.split("/")))
    if found is None:
        return None
    return text_of(found).strip() or None


def _date(value: str | None) -> date | None:
    # xs:date may carry a time zone; the registry keys are plain dates.
    return None if value is None else date.fromisoformat(value[:10])


def _person_key(parent: etree._Element, ns: str, block: str) -> dict[str, Any] | None:
    if parent.find(f"{{{ns}}}{block}") is None:
        return None
    key: dict[str, Any] = {
        "surname": _text(parent, ns, f"{block}/LastName"),
        "givenName": _text(parent, ns, f"{block}/FirstName"),
    }
    patronymic = _text(parent, ns, f"{block}/MiddleName")
    if patronymic is not None:
        key["patronymic"] = patronymic
    born = _date(_text(parent, ns, f"{block}/BirthDate"))
    if born is not None:
        key["dateOfBirth"] = born
    return key


def _arguments(request_id: str | None, **fields: Any) -> dict[str, Any]:
    arguments = {k: v for k, v in fields.items() if v is not None}
    if request_id is not None:
        arguments["requestId"] = request_id[:64]
    return arguments


def birth_query(request: etree._Element, request_id: str | None = None) -> NativeQuery:
    return NativeQuery(
        "FindBirthRecord",
        _arguments(
            request_id,
            child=_person_key(request, BIRTH, "Child"),
            actNumber=_text(request, BIRTH, "ActRecord/Number"),
            actDate=_date(_text(request, BIRTH, "ActRecord/Date")),
        ),
    )


def marriage_query(request: etree._Element, request_id: str | None = None) -> NativeQuery:
    # The registry has no actDate key for marriages; the act number identifies the act.
    return NativeQuery(
        "FindMarriageRecord",
        _arguments(
            request_id,
            husband=_person_key(request, MARRIAGE, "Husband"),
            wife=_person_key(request, MARRIAGE, "Wife"),
            marriageDate=_date(_text(request, MARRIAGE, "MarriageDate")),
            actNumber=_text(request, MARRIAGE, "ActRecord/Number"),
        ),
    )


def death_query(request: etree._Element, request_id: str | None = None) -> NativeQuery:
    return NativeQuery(
        "FindDeathRecord",
        _arguments(
            request_id,
            deceased=_person_key(request, DEATH, "Person"),
            dateOfDeath=_date(_text(request, DEATH, "DeathDate")),
            actNumber=_text(request, DEATH, "ActRecord/Number"),
        ),
    )


# --- native answer -> bus response content ----------------------------------------------


def _value(obj: Any, name: str) -> Any:
    return getattr(obj, name, None) if obj is not None else None


def _str(value: Any) -> str:
    return value.isoformat() if isinstance(value, date) else str(value)


class _Writer:
    """Appends bus elements of one namespace, checking required values are there."""

    def __init__(self, ns: str, act: Any) -> None:
        self.ns = ns
        self.act_number = _value(act, "actNumber")

    def block(self, parent: etree._Element, name: str) -> etree._Element:
        return etree.SubElement(parent, f"{{{self.ns}}}{name}")

    def required(self, parent: etree._Element, name: str, value: Any, native: str) -> None:
        if value is None or value == "":
            raise UnmappableRecord(
                f"registry act {self.act_number}: {native} is missing, the bus requires {name}"
            )
        self.block(parent, name).text = _str(value)

    def optional(self, parent: etree._Element, name: str, value: Any) -> None:
        if value is not None and value != "":
            self.block(parent, name).text = _str(value)

    def gender(self, parent: etree._Element, person: Any, native: str) -> None:
        sex = _value(person, "sex")
        self.required(parent, "Gender", GENDER_OF_SEX.get(str(sex)) if sex else None, native)

    def header(self, record: etree._Element, act: Any) -> None:
        act_record = self.block(record, "ActRecord")
        self.required(act_record, "Number", _value(act, "actNumber"), "actNumber")
        self.required(act_record, "Date", _value(act, "actDate"), "actDate")
        office = self.block(record, "RegistryOffice")
        self.required(office, "Code", _value(act, "officeCode"), "officeCode")
        self.required(office, "Name", _value(act, "officeName"), "officeName")

    def names(self, parent: etree._Element, person: Any, native: str) -> None:
        self.required(parent, "LastName", _value(person, "surname"), f"{native}/surname")
        self.required(parent, "FirstName", _value(person, "givenName"), f"{native}/givenName")
        self.optional(parent, "MiddleName", _value(person, "patronymic"))

    def certificate(self, record: etree._Element, act: Any) -> None:
        certificate = _value(act, "certificate")
        if certificate is None:
            return
        element = self.block(record, "Certificate")
        self.required(element, "Series", _value(certificate, "series"), "certificate/series")
        self.required(element, "Number", _value(certificate, "number"), "certificate/number")
        self.required(
            element, "IssueDate", _value(certificate, "issueDate"), "certificate/issueDate"
        )


def write_birth(record: etree._Element, act: Any) -> None:
    w = _Writer(BIRTH, act)
    w.header(record, act)
    child_native = _value(act, "child")
    child = w.block(record, "Child")
    w.names(child, child_native, "child")
    w.gender(child, child_native, "child/sex")
    w.required(child, "BirthDate", _value(child_native, "dateOfBirth"), "child/dateOfBirth")
    w.required(child, "BirthPlace", _value(child_native, "placeOfBirth"), "child/placeOfBirth")
    for native, name in (("mother", "Mother"), ("father", "Father")):
        parent_native = _value(act, native)
        if parent_native is None:
            continue
        parent = w.block(record, name)
        w.names(parent, parent_native, native)
        w.optional(parent, "BirthDate", _value(parent_native, "dateOfBirth"))
        w.optional(parent, "Citizenship", _value(parent_native, "citizenship"))
    w.certificate(record, act)


def write_marriage(record: etree._Element, act: Any) -> None:
    w = _Writer(MARRIAGE, act)
    w.header(record, act)
    w.required(record, "MarriageDate", _value(act, "marriageDate"), "marriageDate")
    for native, name in (("husband", "Husband"), ("wife", "Wife")):
        spouse_native = _value(act, native)
        spouse = w.block(record, name)
        before = _value(spouse_native, "surnameBefore")
        w.required(spouse, "LastNameBefore", before, f"{native}/surnameBefore")
        after = _value(spouse_native, "surnameAfter")
        w.required(spouse, "LastNameAfter", after, f"{native}/surnameAfter")
        given = _value(spouse_native, "givenName")
        w.required(spouse, "FirstName", given, f"{native}/givenName")
        w.optional(spouse, "MiddleName", _value(spouse_native, "patronymic"))
        born = _value(spouse_native, "dateOfBirth")
        w.required(spouse, "BirthDate", born, f"{native}/dateOfBirth")
        w.optional(spouse, "BirthPlace", _value(spouse_native, "placeOfBirth"))
    w.optional(record, "DissolutionDate", _value(act, "divorceDate"))
    w.certificate(record, act)


def write_death(record: etree._Element, act: Any) -> None:
    w = _Writer(DEATH, act)
    w.header(record, act)
    deceased_native = _value(act, "deceased")
    person = w.block(record, "Person")
    w.names(person, deceased_native, "deceased")
    w.gender(person, deceased_native, "deceased/sex")
    born = _value(deceased_native, "dateOfBirth")
    w.required(person, "BirthDate", born, "deceased/dateOfBirth")
    w.optional(person, "BirthPlace", _value(deceased_native, "placeOfBirth"))
    w.required(record, "DeathDate", _value(act, "dateOfDeath"), "dateOfDeath")
    w.required(record, "DeathPlace", _value(act, "placeOfDeath"), "placeOfDeath")
    w.certificate(record, act)


MAPPINGS: tuple[TypeMapping, ...] = (
    TypeMapping(
        BIRTH,
        "FindBirthRecord",
        "birthAct",
        "BirthRecordResponse",
        "BirthRecord",
        birth_query,
        write_birth,
    ),
    TypeMapping(
        MARRIAGE,
        "FindMarriageRecord",
        "marriageAct",
        "MarriageRecordResponse",
        "MarriageRecord",
        marriage_query,
        write_marriage,
    ),
    TypeMapping(
        DEATH,
        "FindDeathRecord",
        "deathAct",
        "DeathRecordResponse",
        "DeathRecord",
        death_query,
        write_death,
    ),
)
MAPPING_OF: dict[str, TypeMapping] = {mapping.message_type: mapping for mapping in MAPPINGS}


def acts_of(mapping: TypeMapping, answer: Any) -> Sequence[Any]:
    """The act records of a native answer (empty when ``totalFound`` is 0)."""
    acts = _value(answer, mapping.acts_field)
    return list(acts) if acts else []


def response_content(mapping: TypeMapping, acts: Sequence[Any]) -> etree._Element:
    """The bus response element listing ``acts`` (at least one)."""
    if not acts:
        raise ValueError("a response needs at least one act; answer none with NO_DATA")
    ns = mapping.message_type
    response = etree.Element(f"{{{ns}}}{mapping.response_tag}")
    for act in acts:
        mapping.write(etree.SubElement(response, f"{{{ns}}}{mapping.record_tag}"), act)
    return response
