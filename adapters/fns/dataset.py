"""The taxpayers the mock FNS service answers from: seeded and deterministic.

Two hand-written people match the MVD mock's (same names, birth dates and passports),
so one portal scenario can ask both agencies about them; :func:`build_dataset` adds
generated taxpayers from a seeded RNG, so the same seed always gives the same records.
INNs are those of natural persons: 12 digits, the last two the control digits FNS
computes from the first ten (:func:`personal_inn`), so they pass real INN checks.
"""

from __future__ import annotations

import random
from dataclasses import dataclass
from datetime import date, timedelta
from typing import Final

DEFAULT_SEED: Final = 77
GENERATED_PEOPLE: Final = 20


def name_key(name: str | None) -> str:
    """How the tax service compares names: case-insensitive, ``ё`` as ``е``, trimmed."""
    return (name or "").strip().casefold().replace("ё", "е")


# Weights of the two control digits of a 12-digit INN (FNS order of 2012).
_INN_WEIGHTS_11: Final = (7, 2, 4, 10, 3, 5, 9, 4, 6, 8)
_INN_WEIGHTS_12: Final = (3, 7, 2, 4, 10, 3, 5, 9, 4, 6, 8)


def _control_digit(digits: str, weights: tuple[int, ...]) -> str:
    return str(sum(int(d) * w for d, w in zip(digits, weights, strict=True)) % 11 % 10)


def personal_inn(first_ten: str) -> str:
    """The 12-digit INN of a person from its first ten digits (region, office, number)."""
    if len(first_ten) != 10 or not first_ten.isdigit():
        raise ValueError(f"an INN starts with ten digits, got {first_ten!r}")
    eleven = first_ten + _control_digit(first_ten, _INN_WEIGHTS_11)
    return eleven + _control_digit(eleven, _INN_WEIGHTS_12)


@dataclass(frozen=True)
class Taxpayer:
    """One natural person registered with the tax service."""

    surname: str
    given_name: str
    patronymic: str | None
    born: date
    series: str
    number: str
    inn: str
    tax_office: str
    assigned: date

    @property
    def key(self) -> tuple[str, str, str, date, str, str]:
        return (
            name_key(self.surname),
            name_key(self.given_name),
            name_key(self.patronymic),
            self.born,
            self.series,
            self.number,
        )


FIXED_PEOPLE: Final = (
    Taxpayer(
        "Смирнова",
        "Елена",
        "Викторовна",
        date(1991, 7, 2),
        "7011",
        "123456",
        inn=personal_inn("7105123456"),
        tax_office="7105",
        assigned=date(2005, 9, 14),
    ),
    Taxpayer(
        "Смирнов",
        "Сергей",
        "Александрович",
        date(1989, 11, 23),
        "7009",
        "654321",
        inn=personal_inn("7104002365"),
        tax_office="7104",
        assigned=date(2004, 3, 1),
    ),
)

_SURNAMES: Final = (("Кузнецов", "Кузнецова"), ("Попов", "Попова"), ("Волков", "Волкова"))
_MEN: Final = ("Алексей", "Дмитрий", "Иван", "Павел")
_WOMEN: Final = ("Анна", "Ольга", "Мария", "Татьяна")
_PATRONYMICS: Final = (("Петрович", "Петровна"), ("Игоревич", "Игоревна"))
_OFFICES: Final = ("7104", "7105", "7106", "7107", "7116")


class Dataset:
    """Taxpayers indexed by what an ``<InnQuery>`` names."""

    def __init__(self, people: tuple[Taxpayer, ...]) -> None:
        self.people = people
        self._by_key = {person.key: person for person in people}

    def __len__(self) -> int:
        return len(self.people)

    def find(
        self,
        surname: str,
        given_name: str,
        patronymic: str | None,
        born: date,
        series: str,
        number: str,
    ) -> Taxpayer | None:
        """The taxpayer with exactly these names, birth date and passport, if any."""
        key = (
            name_key(surname),
            name_key(given_name),
            name_key(patronymic),
            born,
            series,
            number,
        )
        return self._by_key.get(key)


def _generated(rng: random.Random, index: int) -> Taxpayer:
    female = rng.random() < 0.5
    surname = rng.choice(_SURNAMES)[female]
    given = rng.choice(_WOMEN if female else _MEN)
    patronymic = rng.choice(_PATRONYMICS)[female]
    born = date(1950, 1, 1) + timedelta(days=rng.randrange(365 * 55))
    office = rng.choice(_OFFICES)
    passport_year = min(born.year + 20, 2024) % 100
    return Taxpayer(
        surname,
        given,
        patronymic,
        born,
        f"70{passport_year:02d}",
        f"{rng.randrange(10**6):06d}",
        inn=personal_inn(f"{office}{index:06d}"),
        tax_office=office,
        assigned=born + timedelta(days=365 * 16 + rng.randrange(365 * 10)),
    )


def build_dataset(seed: int = DEFAULT_SEED, generated: int = GENERATED_PEOPLE) -> Dataset:
    """The fixed people plus ``generated`` others drawn from ``seed``."""
    rng = random.Random(seed)  # noqa: S311 - test data, not security
    extra = tuple(_generated(rng, index) for index in range(1, generated + 1))
    return Dataset(FIXED_PEOPLE + extra)
