"""The records the mock MVD migration service answers from: seeded and deterministic.

A handful of hand-written people cover every case the adapter has to map (valid,
lost, stolen, expired, replaced, holder deceased, invalid blank; permanent, temporary
and past registrations; a person with no registration), including the people of the
bus samples in ``tests/data/content/mvd-*.xml``. Around them, :func:`build_dataset`
adds generated residents of the Tula region from a seeded RNG, so the same seed always
gives the same records. Nothing here reads the clock: statuses are as of
:data:`AS_OF`.
"""

from __future__ import annotations

import random
from dataclasses import dataclass, field
from datetime import date, timedelta
from typing import Final

from adapters.mvd_migration.native import ReasonCode, RegType, StatusCode

AS_OF: Final = date(2025, 11, 20)
"""The day the data set describes (statuses and current registrations are as of it)."""
DEFAULT_SEED: Final = 71
GENERATED_PEOPLE: Final = 30

TULA_CENTRAL: Final = (
    "710-001",
    "Отделом УФМС России по Тульской области в Центральном районе гор. Тулы",
)
TULA_SOVETSKY: Final = (
    "710-002",
    "Отделом УФМС России по Тульской области в Советском районе гор. Тулы",
)
TULA_ZARECHNY: Final = (
    "710-003",
    "Отделом УФМС России по Тульской области в Зареченском районе гор. Тулы",
)
NOVOMOSKOVSK: Final = ("710-010", "Отделением УФМС России по Тульской области в гор. Новомосковске")
TVER: Final = ("690-001", "Отделом УФМС России по Тверской области в Центральном районе гор. Твери")


@dataclass(frozen=True)
class Passport:
    """One internal passport as the migration service keeps it."""

    series: str
    number: str
    issued: date
    issuer_code: str
    issuer_name: str
    status: StatusCode = StatusCode.VALID
    reason: ReasonCode | None = None
    invalid_since: date | None = None

    @property
    def key(self) -> tuple[str, str]:
        return (self.series, self.number)


@dataclass(frozen=True)
class Address:
    region_code: str
    locality: str
    house: str
    street: str | None = None
    flat: str | None = None
    region_name: str | None = None
    area: str | None = None
    korpus: str | None = None
    post_index: str | None = None


@dataclass(frozen=True)
class Residence:
    """One registration (current or past) of a person at an address."""

    reg_type: RegType
    address: Address
    reg_from: date
    reg_until: date | None = None
    dereg_date: date | None = None
    dept_code: str | None = None


@dataclass(frozen=True)
class Person:
    surname: str
    given_name: str
    patronymic: str | None
    born: date
    passports: tuple[Passport, ...]
    residences: tuple[Residence, ...] = ()


def _name_key(value: str | None) -> str:
    # The legacy system compares names case-insensitively and without regard to ё/е.
    return (value or "").strip().lower().replace("ё", "е")


@dataclass
class Dataset:
    """All people, indexed by passport and by identity."""

    people: tuple[Person, ...]
    _by_passport: dict[tuple[str, str], tuple[Passport, Person]] = field(init=False, repr=False)

    def __post_init__(self) -> None:
        self._by_passport = {}
        for person in self.people:
            for passport in person.passports:
                if passport.key in self._by_passport:
                    raise ValueError(f"passport {passport.series} {passport.number} twice")
                self._by_passport[passport.key] = (passport, person)

    def __len__(self) -> int:
        return len(self.people)

    @property
    def passports(self) -> tuple[Passport, ...]:
        return tuple(p for p, _ in self._by_passport.values())

    def passport(self, series: str, number: str) -> Passport | None:
        """The passport with this series and number, or None."""
        found = self._by_passport.get((series, number))
        return found[0] if found else None

    def person(
        self,
        surname: str,
        given_name: str,
        patronymic: str | None,
        born: date,
        series: str,
        number: str,
    ) -> Person | None:
        """The holder of passport ``series number`` (any of theirs, current or old) if
        the names and birth date match; an omitted patronymic matches any."""
        found = self._by_passport.get((series, number))
        if found is None:
            return None
        person = found[1]
        if (
            _name_key(person.surname) != _name_key(surname)
            or _name_key(person.given_name) != _name_key(given_name)
            or person.born != born
        ):
            return None
        if patronymic is not None and _name_key(person.patronymic) != _name_key(patronymic):
            return None
        return person


TULA_REGION: Final = "Тульская область"
LENINA_10_5: Final = Address(
    region_code="71",
    region_name=TULA_REGION,
    locality="г. Тула",
    street="ул. Ленина",
    house="10",
    flat="5",
    post_index="300041",
)


def _valid(series: str, number: str, issued: date, issuer: tuple[str, str]) -> Passport:
    return Passport(series, number, issued, issuer[0], issuer[1])


def _invalid(
    series: str,
    number: str,
    issued: date,
    issuer: tuple[str, str],
    reason: ReasonCode,
    since: date,
) -> Passport:
    return Passport(series, number, issued, issuer[0], issuer[1], StatusCode.INVALID, reason, since)


FIXED_PEOPLE: Final[tuple[Person, ...]] = (
    Person(
        "Смирнова",
        "Елена",
        "Викторовна",
        date(1991, 7, 2),
        (
            _valid("7011", "123456", date(2011, 7, 19), TULA_CENTRAL),
            _invalid(
                "7005",
                "318274",
                date(2005, 7, 20),
                TULA_CENTRAL,
                ReasonCode.REPLACED,
                date(2011, 7, 19),
            ),
        ),
        (
            Residence(RegType.PERMANENT, LENINA_10_5, date(2014, 9, 1), dept_code="710-001"),
            Residence(
                RegType.PERMANENT,
                Address("71", "г. Тула", "7", "ул. Металлистов", "21", TULA_REGION),
                date(1991, 8, 1),
                dereg_date=date(2014, 8, 28),
                dept_code="710-001",
            ),
        ),
    ),
    Person(
        "Смирнов",
        "Сергей",
        "Александрович",
        date(1989, 11, 23),
        (_valid("7009", "654321", date(2009, 12, 8), TULA_SOVETSKY),),
        (Residence(RegType.PERMANENT, LENINA_10_5, date(2014, 9, 1), dept_code="710-001"),),
    ),
    # The person of tests/data/content/mvd-*.xml (the bus samples).
    Person(
        "Иванов",
        "Пётр",
        "Андреевич",
        date(1995, 5, 28),
        (_valid("7015", "482913", date(2015, 6, 11), TULA_CENTRAL),),
        (
            Residence(
                RegType.PERMANENT,
                Address(
                    "71",
                    "г. Тула",
                    "45",
                    "пр-кт Ленина",
                    "17",
                    TULA_REGION,
                    korpus="2",
                    post_index="300041",
                ),
                date(2016, 2, 3),
                dept_code="710-001",
            ),
            Residence(
                RegType.TEMPORARY,
                Address("77", "г. Москва", "12", "ул. Профсоюзная", "104", "г. Москва"),
                date(2024, 9, 1),
                reg_until=date(2025, 6, 30),
            ),
        ),
    ),
    Person(
        "Кузнецов",
        "Дмитрий",
        "Игоревич",
        date(1984, 2, 17),
        (
            _invalid(
                "7004",
                "111222",
                date(2004, 3, 1),
                TULA_ZARECHNY,
                ReasonCode.LOST,
                date(2019, 5, 14),
            ),
            _valid("7019", "333444", date(2019, 5, 30), TULA_ZARECHNY),
        ),
        (
            Residence(
                RegType.PERMANENT,
                Address("71", "г. Тула", "3", "ул. Октябрьская", "48", TULA_REGION),
                date(2008, 4, 15),
                dept_code="710-003",
            ),
        ),
    ),
    Person(
        "Попова",
        "Анна",
        "Сергеевна",
        date(1993, 10, 5),
        (
            _invalid(
                "7013",
                "777888",
                date(2013, 10, 21),
                TULA_SOVETSKY,
                ReasonCode.STOLEN,
                date(2022, 1, 10),
            ),
        ),
        (
            Residence(
                RegType.PERMANENT,
                Address("71", "г. Тула", "88", "ул. Советская", "12", TULA_REGION),
                date(2013, 11, 1),
                dept_code="710-002",
            ),
        ),
    ),
    Person(
        "Волков",
        "Николай",
        "Петрович",
        date(1978, 3, 14),
        (
            _invalid(
                "7098",
                "246810",
                date(1998, 3, 30),
                NOVOMOSKOVSK,
                ReasonCode.EXPIRED,
                date(2023, 3, 14),
            ),
        ),
        (
            Residence(
                RegType.PERMANENT,
                Address(
                    "71",
                    "г. Новомосковск",
                    "14",
                    "ул. Комсомольская",
                    "9",
                    TULA_REGION,
                    post_index="301650",
                ),
                date(1999, 6, 1),
                dept_code="710-010",
            ),
        ),
    ),
    Person(
        "Морозова",
        "Галина",
        "Ивановна",
        date(1950, 1, 9),
        (
            _invalid(
                "7002",
                "135790",
                date(2002, 4, 2),
                TULA_CENTRAL,
                ReasonCode.HOLDER_DECEASED,
                date(2024, 8, 2),
            ),
        ),
        (
            Residence(
                RegType.PERMANENT,
                Address("71", "г. Тула", "5", "ул. Тургеневская", "2", TULA_REGION),
                date(1975, 5, 20),
                dereg_date=date(2024, 8, 20),
                dept_code="710-001",
            ),
        ),
    ),
    Person(
        "Фёдоров",
        "Игорь",
        "Валерьевич",
        date(1987, 9, 30),
        (
            _invalid(
                "7017",
                "500001",
                date(2017, 10, 4),
                TULA_SOVETSKY,
                ReasonCode.INVALID_BLANK,
                date(2018, 2, 1),
            ),
            _valid("7018", "500777", date(2018, 2, 12), TULA_SOVETSKY),
        ),
        (
            Residence(
                RegType.PERMANENT,
                Address(
                    "71",
                    "пос. Ленинский",
                    "6",
                    "ул. Гагарина",
                    None,
                    TULA_REGION,
                    area="Ленинский район",
                ),
                date(2010, 3, 3),
                dept_code="710-002",
            ),
        ),
    ),
    # Known, valid passport, never registered anywhere the service knows of.
    Person(
        "Новиков",
        "Артём",
        "Олегович",
        date(2001, 6, 30),
        (_valid("7021", "864209", date(2021, 7, 14), TULA_ZARECHNY),),
    ),
    # Registered permanently in Tver, temporarily in Tula; no patronymic.
    Person(
        "Лебедева",
        "Мария",
        None,
        date(1998, 12, 12),
        (_valid("2819", "402337", date(2019, 1, 10), TVER),),
        (
            Residence(
                RegType.PERMANENT,
                Address(
                    "69",
                    "г. Тверь",
                    "31",
                    "ул. Радищева",
                    "7",
                    "Тверская область",
                    post_index="170100",
                ),
                date(2016, 4, 1),
                dept_code="690-001",
            ),
            Residence(
                RegType.TEMPORARY,
                Address("71", "г. Тула", "3", "ул. Советская", "12", TULA_REGION),
                date(2025, 2, 1),
                reg_until=date(2026, 1, 31),
                dept_code="710-002",
            ),
        ),
    ),
)

_MALE: Final = ("Алексей", "Андрей", "Владимир", "Иван", "Максим", "Михаил", "Павел", "Юрий")
_FEMALE: Final = ("Анастасия", "Дарья", "Екатерина", "Наталья", "Ольга", "Светлана", "Татьяна")
_FATHERS: Final = (
    ("Алексеевич", "Алексеевна"),
    ("Викторович", "Викторовна"),
    ("Николаевич", "Николаевна"),
    ("Сергеевич", "Сергеевна"),
    ("Юрьевич", "Юрьевна"),
)
_SURNAMES: Final = ("Белов", "Васильев", "Голубев", "Зайцев", "Орлов", "Соколов", "Титов")
_STREETS: Final = (
    "ул. Болдина",
    "ул. Демонстрации",
    "ул. Жуковского",
    "ул. Кирова",
    "пр-кт Ленина",
    "ул. Пушкинская",
)
_TOWNS: Final = (
    ("г. Тула", None, TULA_CENTRAL),
    ("г. Тула", None, TULA_SOVETSKY),
    ("г. Новомосковск", None, NOVOMOSKOVSK),
    ("г. Щёкино", "Щёкинский район", TULA_ZARECHNY),
)


def _add_years(day: date, years: int) -> date:
    try:
        return day.replace(year=day.year + years)
    except ValueError:  # 29 February
        return day.replace(year=day.year + years, day=28)


def _generated_person(rng: random.Random, taken: set[tuple[str, str]]) -> Person:
    female = rng.random() < 0.5
    given = rng.choice(_FEMALE if female else _MALE)
    surname = rng.choice(_SURNAMES) + ("а" if female else "")
    patronymic = rng.choice(_FATHERS)[1 if female else 0]
    born = date(1960, 1, 1) + timedelta(days=rng.randrange(365 * 44))
    age_at_issue = 45 if _add_years(born, 45) <= AS_OF else 20
    issued = _add_years(born, age_at_issue) + timedelta(days=rng.randrange(7, 60))
    series = f"70{issued.year % 100:02d}"
    number = f"{rng.randrange(1_000_000):06d}"
    while (series, number) in taken:
        number = f"{(int(number) + 1) % 1_000_000:06d}"
    taken.add((series, number))
    locality, area, issuer = rng.choice(_TOWNS)
    draw = rng.random()
    if draw < 0.75:
        passport = _valid(series, number, issued, issuer)
    else:
        reason = rng.choice([ReasonCode.LOST, ReasonCode.STOLEN, ReasonCode.EXPIRED])
        since = issued + timedelta(days=rng.randrange(30, max(31, (AS_OF - issued).days)))
        passport = _invalid(series, number, issued, issuer, reason, since)
    address = Address(
        "71",
        locality,
        str(rng.randrange(1, 120)),
        rng.choice(_STREETS),
        str(rng.randrange(1, 200)) if rng.random() < 0.8 else None,
        TULA_REGION,
        area=area,
    )
    reg_from = _add_years(born, 18) + timedelta(days=rng.randrange(365 * 5))
    residences = (Residence(RegType.PERMANENT, address, min(reg_from, AS_OF), dept_code=issuer[0]),)
    return Person(surname, given, patronymic, born, (passport,), residences)


def build_dataset(seed: int = DEFAULT_SEED, generated: int = GENERATED_PEOPLE) -> Dataset:
    """The fixed people plus ``generated`` seeded ones; equal seeds give equal data."""
    rng = random.Random(seed)  # noqa: S311 - test data, not security
    taken = {p.key for person in FIXED_PEOPLE for p in person.passports}
    extra = tuple(_generated_person(rng, taken) for _ in range(generated))
    return Dataset(FIXED_PEOPLE + extra)
