"""Search keys of the three registry operations and how they match act records.

Every criterion given must match; absent criteria match anything. Names compare
case-insensitively, with surrounding and repeated spaces ignored and Ё read as Е (as
registry clerks and older records spell them either way). A spouse's surname matches
the surname before or after the marriage.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date

from adapters.zags.mock.dataset import BirthAct, DeathAct, MarriageAct, Person, Registry, Spouse


@dataclass(frozen=True, slots=True)
class PersonKey:
    surname: str
    given_name: str
    patronymic: str | None = None
    date_of_birth: date | None = None


@dataclass(frozen=True, slots=True)
class BirthQuery:
    child: PersonKey | None = None
    act_number: str | None = None
    act_date: date | None = None


@dataclass(frozen=True, slots=True)
class MarriageQuery:
    husband: PersonKey | None = None
    wife: PersonKey | None = None
    marriage_date: date | None = None
    act_number: str | None = None


@dataclass(frozen=True, slots=True)
class DeathQuery:
    deceased: PersonKey | None = None
    date_of_death: date | None = None
    act_number: str | None = None


Query = BirthQuery | MarriageQuery | DeathQuery
Act = BirthAct | MarriageAct | DeathAct


def normalize_name(name: str) -> str:
    return " ".join(name.split()).casefold().replace("ё", "е")


def _same(key: str | None, value: str | None) -> bool:
    if key is None:
        return True
    return value is not None and normalize_name(key) == normalize_name(value)


def _equal(key: object, value: object) -> bool:
    return key is None or key == value


def _person_matches(key: PersonKey | None, person: Person) -> bool:
    if key is None:
        return True
    return (
        _same(key.surname, person.surname)
        and _same(key.given_name, person.given_name)
        and _same(key.patronymic, person.patronymic)
        and _equal(key.date_of_birth, person.date_of_birth)
    )


def _spouse_matches(key: PersonKey | None, spouse: Spouse) -> bool:
    if key is None:
        return True
    return (
        (_same(key.surname, spouse.surname_before) or _same(key.surname, spouse.surname_after))
        and _same(key.given_name, spouse.given_name)
        and _same(key.patronymic, spouse.patronymic)
        and _equal(key.date_of_birth, spouse.date_of_birth)
    )


def find_births(registry: Registry, query: BirthQuery) -> list[BirthAct]:
    return [
        act
        for act in registry.births
        if _equal(query.act_number, act.act_number)
        and _equal(query.act_date, act.act_date)
        and _person_matches(query.child, act.child)
    ]


def find_marriages(registry: Registry, query: MarriageQuery) -> list[MarriageAct]:
    return [
        act
        for act in registry.marriages
        if _equal(query.act_number, act.act_number)
        and _equal(query.marriage_date, act.marriage_date)
        and _spouse_matches(query.husband, act.husband)
        and _spouse_matches(query.wife, act.wife)
    ]


def find_deaths(registry: Registry, query: DeathQuery) -> list[DeathAct]:
    return [
        act
        for act in registry.deaths
        if _equal(query.act_number, act.act_number)
        and _equal(query.date_of_death, act.date_of_death)
        and _person_matches(query.deceased, act.deceased)
    ]


def find(registry: Registry, query: Query) -> list[BirthAct] | list[MarriageAct] | list[DeathAct]:
    """The act records of the query's kind that match every criterion it gives."""
    if isinstance(query, BirthQuery):
        return find_births(registry, query)
    if isinstance(query, MarriageQuery):
        return find_marriages(registry, query)
    return find_deaths(registry, query)
