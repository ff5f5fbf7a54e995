from pathlib import Path

import pytest
from lxml import etree

from gateway.aggregator import ApplicantDataInvalid, build_request, load_catalogue
from gateway.core.catalogue import MISSING, Catalogue, lookup, parse_catalogue
from gateway.core.errors import InternalError, NotFound, SchemaViolation
from gateway.xml.namespaces import (
    FNS_INN,
    MESSAGE_TYPES,
    MVD_PASSPORT_VALIDITY,
    MVD_RESIDENCE_REGISTRATION,
    ZAGS_BIRTH_RECORD,
    ZAGS_MARRIAGE_RECORD,
)

SHIPPED = Path(__file__).resolve().parents[2] / "config" / "services.toml"
CONTENT = Path(__file__).resolve().parents[1] / "data" / "content"


@pytest.fixture(scope="module")
def catalogue() -> Catalogue:
    return load_catalogue(SHIPPED.read_text(encoding="utf-8"))


def test_shipped_services(catalogue: Catalogue) -> None:
    assert catalogue.codes == (
        "child-birth-benefit",
        "passport-check",
        "marriage-registration-check",
    )
    cbb = catalogue.get("child-birth-benefit")
    assert [(p.id, p.message_type, p.required) for p in cbb.parts] == [
        ("birth-record", ZAGS_BIRTH_RECORD, True),
        ("parent-registration", MVD_RESIDENCE_REGISTRATION, True),
        ("parent-inn", FNS_INN, False),
    ]
    assert [p.message_type for p in catalogue.get("passport-check").parts] == [
        MVD_PASSPORT_VALIDITY
    ]
    marriage = catalogue.get("marriage-registration-check")
    assert [(p.message_type, p.required) for p in marriage.parts] == [
        (ZAGS_MARRIAGE_RECORD, True),
        (MVD_PASSPORT_VALIDITY, True),
        (MVD_PASSPORT_VALIDITY, True),
    ]


def test_unknown_service_is_a_client_error(catalogue: Catalogue) -> None:
    with pytest.raises(NotFound, match="passport-check"):
        catalogue.get("nope")


@pytest.mark.parametrize(
    ("service", "part", "sample"),
    [
        ("passport-check", "passport-validity", "mvd-passport-validity"),
        ("child-birth-benefit", "parent-registration", "mvd-residence-registration"),
    ],
)
def test_built_request_equals_the_sample(
    catalogue: Catalogue, service: str, part: str, sample: str
) -> None:
    svc = catalogue.get(service)
    applicant = {
        "passport": {"series": "7015", "number": "482913", "issue_date": "2015-06-11"},
        "holder": {
            "last_name": "Иванов",
            "first_name": "Пётр",
            "middle_name": "Андреевич",
            "birth_date": "1995-05-28",
        },
        "parent": {
            "last_name": "Иванов",
            "first_name": "Пётр",
            "middle_name": "Андреевич",
            "birth_date": "1995-05-28",
            "passport": {"series": "7015", "number": "482913"},
        },
    }
    built = build_request(svc, svc.part(part), applicant)
    parser = etree.XMLParser(remove_blank_text=True)
    expected = etree.parse(str(CONTENT / f"{sample}.request.xml"), parser).getroot()
    assert etree.tostring(built, method="c14n") == etree.tostring(expected, method="c14n")


def test_optional_applicant_fields_are_left_out(catalogue: Catalogue) -> None:
    svc = catalogue.get("child-birth-benefit")
    applicant = {"child": {k: v for k, v in svc.example["child"].items() if k != "middle_name"}}
    built = build_request(svc, svc.part("birth-record"), applicant)
    assert [etree.QName(c).localname for c in built.find(f"{{{ZAGS_BIRTH_RECORD}}}Child")] == [
        "LastName",
        "FirstName",
        "BirthDate",
    ]


def test_two_parts_of_one_type_read_different_people(catalogue: Catalogue) -> None:
    svc = catalogue.get("marriage-registration-check")
    ns = MVD_PASSPORT_VALIDITY
    husband = build_request(svc, svc.part("husband-passport"), svc.example)
    wife = build_request(svc, svc.part("wife-passport"), svc.example)
    assert husband.findtext(f"{{{ns}}}Passport/{{{ns}}}Number") == "314159"
    assert wife.findtext(f"{{{ns}}}Passport/{{{ns}}}Number") == "271828"


def test_missing_applicant_field_names_the_json_path(catalogue: Catalogue) -> None:
    svc = catalogue.get("child-birth-benefit")
    applicant = {"child": {"last_name": "Смирнова", "first_name": "Анна"}}
    with pytest.raises(ApplicantDataInvalid) as info:
        build_request(svc, svc.part("birth-record"), applicant)
    assert info.value.detail["field"] == "child.birth_date"
    assert info.value.code == "schema_violation"
    assert "birth-record" in info.value.message


def test_non_scalar_applicant_field_is_refused(catalogue: Catalogue) -> None:
    svc = catalogue.get("passport-check")
    applicant = {**svc.example, "passport": {"series": ["7015"], "number": "482913"}}
    with pytest.raises(ApplicantDataInvalid, match=r"passport\.series"):
        build_request(svc, svc.part("passport-validity"), applicant)


def test_xsd_failure_names_service_part_element_and_field(catalogue: Catalogue) -> None:
    svc = catalogue.get("marriage-registration-check")
    applicant = {**svc.example, "wife": {**svc.example["wife"], "birth_date": "1990-13-30"}}
    with pytest.raises(SchemaViolation) as info:
        build_request(svc, svc.part("marriage-record"), applicant)
    detail = info.value.detail
    assert (detail["service"], detail["part"]) == ("marriage-registration-check", "marriage-record")
    assert (detail["element"], detail["field"]) == ("Wife/BirthDate", "wife.birth_date")


def test_lookup() -> None:
    data = {"a": {"b": "x", "n": None}}
    assert lookup(data, "a.b") == "x"
    assert lookup(data, "a.n") is MISSING
    assert lookup(data, "a.b.c") is MISSING
    assert lookup(data, "z") is MISSING


# --- bad catalogues -------------------------------------------------------------

GOOD = f"""
[[service]]
code = "one"
title = "One"
deadline = "PT1M"

[[service.part]]
id = "passport"
message_type = "{MVD_PASSPORT_VALIDITY}"
deadline = "PT30S"

[service.part.request]
"Passport/Series" = "series"
"Passport/Number" = "number"

[service.part.result]
status = "Status"

[service.example]
series = "7015"
number = "482913"
"""


def test_minimal_catalogue_loads() -> None:
    svc = load_catalogue(GOOD).get("one")
    assert svc.parts[0].result == (("status", "Status"),)


@pytest.mark.parametrize(
    ("old", "new", "words"),
    [
        (
            MVD_PASSPORT_VALIDITY,
            "urn://nope",
            ["'one'", "'passport'", "message_type", "urn://nope"],
        ),
        ('= "number"', '= "Number.X"', ["'one'", "'passport'", "request", "applicant path"]),
        ('"Passport/Number"', '"Passport//Number"', ["'one'", "'passport'", "element path"]),
        ('deadline = "PT30S"', 'deadline = "PT2M"', ["'one'", "'passport'", "service deadline"]),
        ('deadline = "PT30S"', 'deadline = "PT0S"', ["'one'", "'passport'", "deadline"]),
        ('number = "482913"', 'number = "48"', ["'one'", "passport", "Passport/Number", "number"]),
        ('number = "482913"', "", ["'one'", "'passport'", "example applicant", "'number'"]),
        ('status = "Status"', 'Status = "Status"', ["'one'", "result name", "snake_case"]),
        ('code = "one"', 'code = "One!"', ["code"]),
        ('"Passport/Number" = "number"', '"Passport" = "number"', ["child elements"]),
        ('"Passport/Number" = "number"', '"Passport/Number" = 5', ["'passport'", "applicant path"]),
        ('message_type = "', 'colour = "red"\nmessage_type = "', ["'passport'", "colour"]),
        ("required", "required", []),
    ],
)
def test_bad_catalogue_names_service_and_field(old: str, new: str, words: list[str]) -> None:
    text = GOOD.replace(old, new, 1)
    if not words:
        text = GOOD.replace('deadline = "PT30S"', 'deadline = "PT30S"\nrequired = false')
        words = ["at least one part must be required"]
    with pytest.raises(InternalError) as info:
        load_catalogue(text)
    for word in words:
        assert word in info.value.message


def test_duplicates_are_refused() -> None:
    with pytest.raises(InternalError, match="service 'one' is declared twice"):
        parse_catalogue(GOOD + GOOD)
    part = "[[service.part]]" + GOOD.split("[[service.part]]")[1].split("[service.example]")[0]
    twice = GOOD.replace("[service.example]", part + "[service.example]")
    with pytest.raises(InternalError, match="part 'passport' is declared twice"):
        parse_catalogue(twice)


def test_not_toml_and_unknown_keys() -> None:
    with pytest.raises(InternalError, match="not valid TOML"):
        parse_catalogue("[[service]")
    with pytest.raises(InternalError, match="unknown top-level"):
        parse_catalogue("[services]\n")


def test_known_types_are_checked_without_xsds() -> None:
    assert parse_catalogue(GOOD, known_types=MESSAGE_TYPES).codes == ("one",)
    with pytest.raises(InternalError, match="unknown message type"):
        parse_catalogue(GOOD, known_types=[FNS_INN])
