"""The mock registry's act records: a few fixed records plus seeded, generated families.

Fixed records are the ones the bus samples in ``tests/data/content/zags-*.xml`` and the
demo rely on (the Smirnov family, the Kuznetsov marriage, the Volkov death), with exactly
the values of those samples. Generated families are drawn from ``random.Random(seed)``,
so the same seed always gives the same registry, and are consistent: a child's surname
and patronymic come from the father, a mother appears under her married surname, a
deceased grandfather is the father named in his son's birth act, dates follow each other.

Every value also fits the bus message types (name pattern, office code, certificate
series), so whatever the adapter maps from here is schema-valid on the bus.
"""

from __future__ import annotations

import random
from dataclasses import dataclass, replace
from datetime import date, timedelta
from typing import Literal

Sex = Literal["M", "F"]
RUSSIA = "643"
DEFAULT_SEED = 71
DEFAULT_FAMILIES = 14
TODAY = date(2025, 6, 1)
"""The registry's fixed "today": nothing generated happens after it."""


@dataclass(frozen=True, slots=True)
class Office:
    code: str
    name: str


@dataclass(frozen=True, slots=True)
class Person:
    """A person as an act record shows them (their surname at the time of the act)."""

    surname: str
    given_name: str
    patronymic: str | None
    sex: Sex
    date_of_birth: date
    place_of_birth: str | None = None
    citizenship: str | None = RUSSIA


@dataclass(frozen=True, slots=True)
class Spouse:
    surname_before: str
    surname_after: str
    given_name: str
    patronymic: str | None
    date_of_birth: date
    place_of_birth: str | None = None
    citizenship: str | None = RUSSIA


@dataclass(frozen=True, slots=True)
class Certificate:
    series: str
    number: str
    issue_date: date


@dataclass(frozen=True, slots=True)
class BirthAct:
    act_number: str
    act_date: date
    office: Office
    child: Person
    mother: Person | None
    father: Person | None
    certificate: Certificate | None


@dataclass(frozen=True, slots=True)
class MarriageAct:
    act_number: str
    act_date: date
    office: Office
    marriage_date: date
    husband: Spouse
    wife: Spouse
    divorce_date: date | None
    certificate: Certificate | None


@dataclass(frozen=True, slots=True)
class DeathAct:
    act_number: str
    act_date: date
    office: Office
    deceased: Person
    date_of_death: date
    place_of_death: str
    certificate: Certificate | None


@dataclass(frozen=True, slots=True)
class Registry:
    births: tuple[BirthAct, ...]
    marriages: tuple[MarriageAct, ...]
    deaths: tuple[DeathAct, ...]


TULA = Office("R7100033", "Отдел ЗАГС по городу Туле комитета ЗАГС Тульской области")
NOVOMOSKOVSK = Office(
    "R7100041", "Отдел ЗАГС по Новомосковскому району комитета ЗАГС Тульской области"
)
OFFICES: tuple[Office, ...] = (
    TULA,
    NOVOMOSKOVSK,
    Office("R7100012", "Отдел ЗАГС по Алексинскому району комитета ЗАГС Тульской области"),
    Office("R7100058", "Отдел ЗАГС по Щёкинскому району комитета ЗАГС Тульской области"),
    Office("R7100027", "Отдел ЗАГС по Ефремовскому району комитета ЗАГС Тульской области"),
)

TULA_CITY = "Российская Федерация, Тульская область, город Тула"
PLACES: tuple[str, ...] = (
    TULA_CITY,
    "город Новомосковск Тульской области",
    "город Алексин Тульской области",
    "город Щёкино Тульской области",
    "город Ефремов Тульской области",
    "город Узловая Тульской области",
    "город Богородицк Тульской области",
    "город Рязань",
)

# (given name, patronymic of a son, patronymic of a daughter)
MALE_NAMES: tuple[tuple[str, str, str], ...] = (
    ("Александр", "Александрович", "Александровна"),
    ("Сергей", "Сергеевич", "Сергеевна"),
    ("Дмитрий", "Дмитриевич", "Дмитриевна"),
    ("Андрей", "Андреевич", "Андреевна"),
    ("Алексей", "Алексеевич", "Алексеевна"),
    ("Михаил", "Михайлович", "Михайловна"),
    ("Иван", "Иванович", "Ивановна"),
    ("Николай", "Николаевич", "Николаевна"),
    ("Владимир", "Владимирович", "Владимировна"),
    ("Павел", "Павлович", "Павловна"),
    ("Игорь", "Игоревич", "Игоревна"),
    ("Виктор", "Викторович", "Викторовна"),
    ("Пётр", "Петрович", "Петровна"),
    ("Артём", "Артёмович", "Артёмовна"),
    ("Юрий", "Юрьевич", "Юрьевна"),
    ("Евгений", "Евгеньевич", "Евгеньевна"),
)
FEMALE_NAMES: tuple[str, ...] = (
    "Анна",
    "Елена",
    "Ольга",
    "Мария",
    "Наталья",
    "Татьяна",
    "Ирина",
    "Екатерина",
    "Светлана",
    "Юлия",
    "Дарья",
    "Ксения",
    "Алёна",
    "Софья",
    "Полина",
)
# (male form, female form); none of the fixed families' surnames, so their searches
# always find exactly their own records.
SURNAMES: tuple[tuple[str, str], ...] = (
    ("Иванов", "Иванова"),
    ("Петров", "Петрова"),
    ("Соколов", "Соколова"),
    ("Морозов", "Морозова"),
    ("Новиков", "Новикова"),
    ("Фёдоров", "Фёдорова"),
    ("Егоров", "Егорова"),
    ("Лебедев", "Лебедева"),
    ("Козлов", "Козлова"),
    ("Зайцев", "Зайцева"),
    ("Поляков", "Полякова"),
    ("Никитин", "Никитина"),
    ("Григорьев", "Григорьева"),
    ("Ковалёв", "Ковалёва"),
    ("Жуков", "Жукова"),
)
ROMAN_SERIES: tuple[str, ...] = ("I", "II", "III", "IV", "V", "VI")

BIRTH, MARRIAGE, DEATH = 1, 2, 3


def act_number(kind: int, year: int, seq: int, office: Office) -> str:
    """A 21-digit EGR ZAGS style number: 1, year, region 7100000, kind, seq, office."""
    return f"1{year:04d}7100000{kind}{seq:05d}{office.code[-3:]}"


def fixed_registry() -> Registry:
    """The records the samples and the demo use, with exactly their values."""
    sergey = Person("Смирнов", "Сергей", "Александрович", "M", date(1989, 11, 23), "город Тула")
    elena_born = Person(
        "Белова", "Елена", "Викторовна", "F", date(1991, 7, 2), "город Новомосковск"
    )
    anna = BirthAct(
        act_number="120197100000101234005",
        act_date=date(2019, 3, 20),
        office=TULA,
        child=Person("Смирнова", "Анна", "Сергеевна", "F", date(2019, 3, 14), TULA_CITY),
        mother=Person("Смирнова", "Елена", "Викторовна", "F", date(1991, 7, 2)),
        father=Person("Смирнов", "Сергей", "Александрович", "M", date(1989, 11, 23)),
        certificate=Certificate("II-БО", "512347", date(2019, 3, 20)),
    )
    smirnov_marriage = MarriageAct(
        act_number=act_number(MARRIAGE, 2016, 517, TULA),
        act_date=date(2016, 6, 18),
        office=TULA,
        marriage_date=date(2016, 6, 18),
        husband=_spouse(sergey, sergey.surname),
        wife=_spouse(elena_born, "Смирнова"),
        divorce_date=None,
        certificate=Certificate("I-БО", "604412", date(2016, 6, 18)),
    )
    kuznetsov_marriage = MarriageAct(
        act_number="415",
        act_date=date(2015, 8, 15),
        office=NOVOMOSKOVSK,
        marriage_date=date(2015, 8, 15),
        husband=Spouse(
            "Кузнецов",
            "Кузнецов",
            "Дмитрий",
            "Игоревич",
            date(1988, 5, 9),
            "город Новомосковск Тульской области",
        ),
        wife=Spouse(
            "Орлова",
            "Кузнецова",
            "Ольга",
            "Павловна",
            date(1990, 12, 30),
            "город Алексин Тульской области",
        ),
        divorce_date=None,
        certificate=Certificate("I-БО", "703118", date(2015, 8, 15)),
    )
    volkov_death = DeathAct(
        act_number="170237100000200871004",
        act_date=date(2023, 10, 5),
        office=TULA,
        deceased=Person(
            "Волков",
            "Николай",
            "Петрович",
            "M",
            date(1941, 2, 17),
            "деревня Малахово Заокского района Тульской области",
        ),
        date_of_death=date(2023, 10, 4),
        place_of_death=TULA_CITY,
        certificate=Certificate("III-БО", "884210", date(2023, 10, 5)),
    )
    sergey_birth = BirthAct(
        act_number=act_number(BIRTH, 1989, 2291, TULA),
        act_date=date(1989, 11, 29),
        office=TULA,
        child=sergey,
        mother=Person("Смирнова", "Галина", "Ивановна", "F", date(1963, 4, 8)),
        father=Person("Смирнов", "Александр", "Николаевич", "M", date(1961, 9, 30)),
        certificate=Certificate("I-БО", "318806", date(1989, 11, 29)),
    )
    elena_birth = BirthAct(
        act_number=act_number(BIRTH, 1991, 874, NOVOMOSKOVSK),
        act_date=date(1991, 7, 9),
        office=NOVOMOSKOVSK,
        child=elena_born,
        mother=Person("Белова", "Татьяна", "Петровна", "F", date(1966, 1, 15)),
        father=Person("Белов", "Виктор", "Андреевич", "M", date(1964, 5, 21)),
        certificate=Certificate("II-БО", "441093", date(1991, 7, 9)),
    )
    return Registry(
        births=(anna, sergey_birth, elena_birth),
        marriages=(smirnov_marriage, kuznetsov_marriage),
        deaths=(volkov_death,),
    )


def build_registry(seed: int = DEFAULT_SEED, families: int = DEFAULT_FAMILIES) -> Registry:
    """The fixed records plus ``families`` generated families; deterministic in ``seed``."""
    generator = _FamilyGenerator(random.Random(seed))  # noqa: S311 - reproducible data
    for _ in range(families):
        generator.family()
    fixed = fixed_registry()
    return Registry(
        births=fixed.births + tuple(generator.births),
        marriages=fixed.marriages + tuple(generator.marriages),
        deaths=fixed.deaths + tuple(generator.deaths),
    )


def _spouse(person: Person, surname_after: str) -> Spouse:
    return Spouse(
        surname_before=person.surname,
        surname_after=surname_after,
        given_name=person.given_name,
        patronymic=person.patronymic,
        date_of_birth=person.date_of_birth,
        place_of_birth=person.place_of_birth,
        citizenship=person.citizenship,
    )


class _FamilyGenerator:
    """Draws consistent families: grandparents, a married couple, their children."""

    def __init__(self, rng: random.Random) -> None:
        self.rng = rng
        self.seq = 0
        self.births: list[BirthAct] = []
        self.marriages: list[MarriageAct] = []
        self.deaths: list[DeathAct] = []

    def family(self) -> None:
        rng = self.rng
        husband_surname = rng.choice(SURNAMES)
        wife_surname = rng.choice([s for s in SURNAMES if s != husband_surname])
        husband_born = self._date(1955, 1995)
        wife_born = husband_born + timedelta(days=rng.randint(-5 * 365, 5 * 365))
        husband, husband_father = self._adult(husband_surname, "M", husband_born)
        wife, _ = self._adult(wife_surname, "F", wife_born)

        younger = max(husband_born, wife_born)
        married = younger + timedelta(days=rng.randint(20 * 365, 30 * 365))
        married = min(married, TODAY - timedelta(days=400))
        takes_name = rng.random() < 0.85
        wife_after = husband_surname[1] if takes_name else wife.surname
        office = rng.choice(OFFICES)
        divorced = rng.random() < 0.15
        divorce = married + timedelta(days=rng.randint(3 * 365, 8 * 365)) if divorced else None
        if divorce is not None and divorce >= TODAY:
            divorce = None
        self.marriages.append(
            MarriageAct(
                act_number=self._number(MARRIAGE, married, office),
                act_date=married,
                office=office,
                marriage_date=married,
                husband=_spouse(husband, husband.surname),
                wife=_spouse(wife, wife_after),
                divorce_date=divorce,
                certificate=self._certificate(married),
            )
        )

        mother = replace(wife, surname=wife_after, place_of_birth=None)
        father = replace(husband, place_of_birth=None)
        child_born = married
        for _ in range(rng.randint(1, 3)):
            child_born = child_born + timedelta(days=rng.randint(300, 4 * 365))
            if child_born >= (divorce or TODAY) - timedelta(days=30):
                break
            self._child(husband_surname, mother, father, child_born)

        if rng.random() < 0.6:
            self._death(husband_father, earliest=husband_born + timedelta(days=365))

    def _adult(self, surname: tuple[str, str], sex: Sex, born: date) -> tuple[Person, Person]:
        """A person and, with probability 0.6, their birth act; returns (person, father)."""
        rng = self.rng
        father_name, son_patronymic, daughter_patronymic = rng.choice(MALE_NAMES)
        if sex == "M":
            person = Person(
                surname[0], rng.choice(MALE_NAMES)[0], son_patronymic, "M", born, rng.choice(PLACES)
            )
        else:
            person = Person(
                surname[1],
                rng.choice(FEMALE_NAMES),
                daughter_patronymic,
                "F",
                born,
                rng.choice(PLACES),
            )
        father = Person(
            surname[0],
            father_name,
            rng.choice(MALE_NAMES)[1],
            "M",
            born - timedelta(days=rng.randint(22 * 365, 35 * 365)),
        )
        mother = Person(
            surname[1],
            rng.choice(FEMALE_NAMES),
            rng.choice(MALE_NAMES)[2],
            "F",
            born - timedelta(days=rng.randint(19 * 365, 32 * 365)),
        )
        if rng.random() < 0.6:
            self._birth_act(person, mother, father)
        return person, father

    def _child(self, surname: tuple[str, str], mother: Person, father: Person, born: date) -> None:
        rng = self.rng
        father_patronymics = next(n for n in MALE_NAMES if n[0] == father.given_name)
        if rng.random() < 0.5:
            child = Person(
                surname[0],
                rng.choice(MALE_NAMES)[0],
                father_patronymics[1],
                "M",
                born,
                rng.choice(PLACES),
            )
        else:
            child = Person(
                surname[1],
                rng.choice(FEMALE_NAMES),
                father_patronymics[2],
                "F",
                born,
                rng.choice(PLACES),
            )
        self._birth_act(child, mother, father)

    def _birth_act(self, child: Person, mother: Person, father: Person) -> None:
        office = self.rng.choice(OFFICES)
        registered = child.date_of_birth + timedelta(days=self.rng.randint(1, 25))
        self.births.append(
            BirthAct(
                act_number=self._number(BIRTH, registered, office),
                act_date=registered,
                office=office,
                child=child,
                mother=mother,
                father=father,
                certificate=self._certificate(registered),
            )
        )

    def _death(self, person: Person, earliest: date) -> None:
        rng = self.rng
        first = max(earliest, person.date_of_birth + timedelta(days=60 * 365), date(2000, 1, 1))
        if first >= TODAY - timedelta(days=10):
            return
        died = first + timedelta(days=rng.randint(0, (TODAY - first).days - 10))
        registered = died + timedelta(days=rng.randint(1, 3))
        office = rng.choice(OFFICES)
        self.deaths.append(
            DeathAct(
                act_number=self._number(DEATH, registered, office),
                act_date=registered,
                office=office,
                deceased=replace(person, place_of_birth=rng.choice(PLACES)),
                date_of_death=died,
                place_of_death=rng.choice(PLACES),
                certificate=self._certificate(registered),
            )
        )

    def _number(self, kind: int, on: date, office: Office) -> str:
        self.seq += 1
        return act_number(kind, on.year, 50000 + self.seq, office)

    def _certificate(self, issued: date) -> Certificate:
        series = f"{self.rng.choice(ROMAN_SERIES)}-БО"
        return Certificate(series, f"{self.rng.randint(0, 999999):06d}", issued)

    def _date(self, first_year: int, last_year: int) -> date:
        start = date(first_year, 1, 1)
        return start + timedelta(days=self.rng.randint(0, (date(last_year, 12, 31) - start).days))
