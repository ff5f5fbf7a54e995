"""The mock MVD migration service as a real process: native XML over HTTP, and its knobs.

The mock is started with ``python -m adapters.mvd_migration.mock_service`` on a free
127.0.0.1 port, exactly as docker-compose and the adapter tests start it. Every answer
is read with the bus's hardened parser and validated against the native XSD. No test
measures time: latency is observed as a client timeout, never as a duration.
"""

from __future__ import annotations

import signal
from collections.abc import Iterator
from datetime import date
from pathlib import Path
from typing import Any

import httpx
import pytest
from lxml import etree

from adapters.mvd_migration.dataset import FIXED_PEOPLE, build_dataset
from adapters.mvd_migration.native import (
    NS,
    ReasonCode,
    StatusCode,
    native_schema,
    passport_check,
    q,
    residence_lookup,
    schema_path,
    to_bytes,
)
from gateway.core.errors import InvalidContent
from gateway.testing.processes import MockAgencyProcess
from gateway.xml.parse import parse_secure

REPO = Path(__file__).resolve().parents[2]
EXAMPLES = schema_path().parent / "examples"
MOCK_MVD = "adapters.mvd_migration.mock_service"


@pytest.fixture(scope="module")
def mock_mvd(tmp_path_factory: pytest.TempPathFactory) -> Iterator[MockAgencyProcess]:
    process = MockAgencyProcess(MOCK_MVD, tmp_path_factory.mktemp("mock-mvd") / "mock.log")
    yield process
    process.stop()


@pytest.fixture(scope="module")
def mock_client(mock_mvd: MockAgencyProcess) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=mock_mvd.base_url, timeout=10) as client:
        yield client


@pytest.fixture
def mvd(mock_client: httpx.Client) -> httpx.Client:
    """A client on the shared mock, its knobs reset to the start-up config."""
    mock_client.post("/_control", json={"reset": True}).raise_for_status()
    return mock_client


def answer_of(response: httpx.Response) -> etree._Element:
    """The response's ``<Answer>``, read as the adapter will: hardened parse, then XSD."""
    assert response.headers["content-type"].startswith("application/xml")
    root = parse_secure(response.content)
    native_schema().validate(root, "answer")
    assert root.tag == q("Answer")
    return root


def ask(client: httpx.Client, query: etree._Element | bytes) -> httpx.Response:
    body = query if isinstance(query, bytes) else to_bytes(query)
    return client.post("/query", content=body, headers={"Content-Type": "application/xml"})


def child(element: etree._Element, local: str) -> etree._Element:
    found = element.find(q(local))
    assert found is not None, f"no <{local}> in <{etree.QName(element).localname}>"
    return found


def texts(element: etree._Element) -> dict[str, str]:
    return {etree.QName(child).localname: child.text or "" for child in element}


def set_knobs(client: httpx.Client, **knobs: Any) -> dict[str, Any]:
    response = client.post("/_control", json=knobs)
    response.raise_for_status()
    state: dict[str, Any] = response.json()
    return state


# --- passports ---------------------------------------------------------------------


def test_health_reports_records_and_knobs(mvd: httpx.Client) -> None:
    body = mvd.get("/health").json()
    assert body["status"] == "ok"
    assert body["records"] >= 30
    assert body["outage"] is False
    assert body["error_rate"] == 0.0


@pytest.mark.parametrize(
    ("series", "number", "issuer"),
    [("7011", "123456", "710-001"), ("7009", "654321", "710-002"), ("7015", "482913", "710-001")],
)
def test_valid_passport(mvd: httpx.Client, series: str, number: str, issuer: str) -> None:
    response = ask(mvd, passport_check(series, number, query_id="q-1", system="MVD_MIGR"))
    assert response.status_code == 200
    answer = answer_of(response)
    assert answer.get("queryId") == "q-1"
    status = texts(child(answer, "PassportStatus"))
    assert status["StatusCode"] == StatusCode.VALID
    assert (status["DocSeries"], status["DocNumber"]) == (series, number)
    assert status["IssuerCode"] == issuer
    assert "ReasonCode" not in status
    assert "InvalidSince" not in status


def test_valid_passport_with_matching_issue_date(mvd: httpx.Client) -> None:
    answer = answer_of(ask(mvd, passport_check("7011", "123456", date(2011, 7, 19))))
    assert answer.findtext(f"{q('PassportStatus')}/{q('StatusCode')}") == "D"


@pytest.mark.parametrize(
    ("series", "number", "reason"),
    [
        ("7004", "111222", ReasonCode.LOST),
        ("7013", "777888", ReasonCode.STOLEN),
        ("7098", "246810", ReasonCode.EXPIRED),
        ("7005", "318274", ReasonCode.REPLACED),
        ("7002", "135790", ReasonCode.HOLDER_DECEASED),
        ("7017", "500001", ReasonCode.INVALID_BLANK),
    ],
)
def test_invalid_passport_says_why(
    mvd: httpx.Client, series: str, number: str, reason: ReasonCode
) -> None:
    status = texts(child(answer_of(ask(mvd, passport_check(series, number))), "PassportStatus"))
    assert status["StatusCode"] == StatusCode.INVALID
    assert status["ReasonCode"] == reason
    assert status["ReasonText"]
    assert date.fromisoformat(status["InvalidSince"]) > date.fromisoformat(status["DocIssued"])


@pytest.mark.parametrize(
    "query",
    [
        passport_check("7099", "000000"),
        passport_check("7011", "123457"),
        # Right series and number, wrong issue date: not this passport.
        passport_check("7011", "123456", date(2012, 1, 1)),
    ],
    ids=["unknown-series", "unknown-number", "issue-date-mismatch"],
)
def test_unknown_passport(mvd: httpx.Client, query: etree._Element) -> None:
    response = ask(mvd, query)
    assert response.status_code == 200
    status = texts(child(answer_of(response), "PassportStatus"))
    assert status["StatusCode"] == StatusCode.UNKNOWN
    assert set(status) == {"DocSeries", "DocNumber", "StatusCode"}


# --- residence ---------------------------------------------------------------------


def residences(response: httpx.Response) -> tuple[bool, list[dict[str, Any]]]:
    assert response.status_code == 200
    found = child(answer_of(response), "Residences")
    records = []
    for residence in found.iterchildren(q("Residence")):
        record: dict[str, Any] = texts(residence)
        record["Address"] = texts(child(residence, "Address"))
        records.append(record)
    return found.get("personKnown") == "true", records


LENINA_10_5 = {
    "PostIndex": "300041",
    "RegionCode": "71",
    "RegionName": "Тульская область",
    "Locality": "г. Тула",
    "Street": "ул. Ленина",
    "House": "10",
    "Flat": "5",
}


@pytest.mark.parametrize(
    "query",
    [
        residence_lookup("Смирнова", "Елена", "Викторовна", date(1991, 7, 2), "7011", "123456"),
        # By her old (replaced) passport, names in other case, patronymic left out.
        residence_lookup("СМИРНОВА", "елена", None, date(1991, 7, 2), "7005", "318274"),
        residence_lookup(
            "Смирнов", "Сергей", "Александрович", date(1989, 11, 23), "7009", "654321"
        ),
    ],
    ids=["smirnova", "smirnova-old-passport", "smirnov"],
)
def test_residence_found_at_lenina_10(mvd: httpx.Client, query: etree._Element) -> None:
    known, records = residences(ask(mvd, query))
    assert known
    current = [r for r in records if "DeregDate" not in r]
    assert len(current) == 1
    assert current[0]["RegType"] == "P"
    assert current[0]["Address"] == LENINA_10_5
    assert current[0]["RegFrom"] == "2014-09-01"
    assert records[0] == current[0], "current registrations come first"


def test_residence_permanent_and_temporary(mvd: httpx.Client) -> None:
    # The person of the bus samples; ё and е are the same to the legacy system.
    query = residence_lookup("Иванов", "Петр", "Андреевич", date(1995, 5, 28), "7015", "482913")
    known, records = residences(ask(mvd, query))
    assert known
    assert [(r["RegType"], r["Address"]["RegionCode"]) for r in records] == [
        ("T", "77"),
        ("P", "71"),
    ]
    assert records[0]["RegUntil"] == "2025-06-30"
    assert records[1]["Address"]["Korpus"] == "2"


def test_person_known_without_registration(mvd: httpx.Client) -> None:
    query = residence_lookup("Новиков", "Артём", "Олегович", date(2001, 6, 30), "7021", "864209")
    assert residences(ask(mvd, query)) == (True, [])


@pytest.mark.parametrize(
    "query",
    [
        residence_lookup("Смирнова", "Елена", "Викторовна", date(1991, 7, 3), "7011", "123456"),
        residence_lookup("Смирнова", "Елена", "Петровна", date(1991, 7, 2), "7011", "123456"),
        residence_lookup("Смирнова", "Елена", "Викторовна", date(1991, 7, 2), "7009", "654321"),
        residence_lookup("Петрова", "Ольга", None, date(1990, 1, 1), "7099", "000000"),
    ],
    ids=["birth-date", "patronymic", "someone-elses-passport", "nobody"],
)
def test_residence_not_found(mvd: httpx.Client, query: etree._Element) -> None:
    assert residences(ask(mvd, query)) == (False, [])


def _with_born(born: str) -> bytes:
    query = residence_lookup("Смирнова", "Елена", None, date(1991, 7, 2), "7011", "123456")
    child(child(query, "ResidenceLookup"), "Born").text = born
    return to_bytes(query)


@pytest.mark.parametrize(
    ("born", "known"),
    [("1991-07-02+03:00", True), ("1991-07-02Z", True), ("12345-07-02", False)],
)
def test_birth_date_with_timezone_or_beyond_9999(mvd: httpx.Client, born: str, known: bool) -> None:
    assert residences(ask(mvd, _with_born(born)))[0] is known


# --- invalid queries ---------------------------------------------------------------

QUERY_NS = f'xmlns="{NS}"'


@pytest.mark.parametrize(
    "body",
    [
        b"",
        b"<Query",
        b'<!DOCTYPE Query [<!ENTITY x "y">]><Query/>',
        f"<Query {QUERY_NS}/>".encode(),
        f"<Query {QUERY_NS}><PassportCheck><DocSeries>70</DocSeries>"
        "<DocNumber>123456</DocNumber></PassportCheck></Query>".encode(),
        b"<Query><PassportCheck><DocSeries>7011</DocSeries>"
        b"<DocNumber>123456</DocNumber></PassportCheck></Query>",
        to_bytes(passport_check("7011", "123456")).replace(b"<Query", b"<Answer", 1)[:-8]
        + b"Answer>",
        b"<Query " + QUERY_NS.encode() + b">" + b"x" * 70_000 + b"</Query>",
    ],
    ids=[
        "empty",
        "not-well-formed",
        "doctype",
        "empty-query",
        "bad-series",
        "no-namespace",
        "answer-not-query",
        "too-large",
    ],
)
def test_invalid_query_is_400_format_error(mvd: httpx.Client, body: bytes) -> None:
    response = ask(mvd, body)
    assert response.status_code == 400
    error = child(answer_of(response), "Error")
    assert error.get("code") == "FORMAT_ERROR"
    assert error.text


# --- knobs -------------------------------------------------------------------------


def test_error_rate_one_is_500_system_error(mvd: httpx.Client) -> None:
    set_knobs(mvd, error_rate=1.0)
    for _ in range(3):
        response = ask(mvd, passport_check("7011", "123456"))
        assert response.status_code == 500
        error = child(answer_of(response), "Error")
        assert error.get("code") == "SYSTEM_ERROR"


def test_error_rate_is_deterministic_per_seed(mvd: httpx.Client) -> None:
    def run() -> list[int]:
        set_knobs(mvd, error_rate=0.5, seed=1234)
        return [ask(mvd, passport_check("7011", "123456")).status_code for _ in range(20)]

    first = run()
    assert set(first) == {200, 500}
    assert run() == first


def test_malformed_answer_fails_the_hardened_parser(mvd: httpx.Client) -> None:
    set_knobs(mvd, malformed=True)
    response = ask(mvd, passport_check("7011", "123456"))
    assert response.status_code == 200
    with pytest.raises(InvalidContent, match="not well-formed"):
        parse_secure(response.content)


def test_outage_is_503_until_lifted(mvd: httpx.Client) -> None:
    set_knobs(mvd, outage=True)
    response = ask(mvd, passport_check("7011", "123456"))
    assert response.status_code == 503
    assert response.headers["retry-after"] == "30"
    error = child(answer_of(response), "Error")
    assert error.get("code") == "SERVICE_UNAVAILABLE"
    assert mvd.get("/health").status_code == 200
    set_knobs(mvd, outage=False)
    assert ask(mvd, passport_check("7011", "123456")).status_code == 200


def test_latency_outlasts_a_short_client_timeout(mvd: httpx.Client) -> None:
    set_knobs(mvd, latency_ms=1500)
    with pytest.raises(httpx.ReadTimeout):
        mvd.post("/query", content=to_bytes(passport_check("7011", "123456")), timeout=0.1)
    set_knobs(mvd, latency_ms=0)
    assert ask(mvd, passport_check("7011", "123456")).status_code == 200


def test_control_counts_queries_and_refuses_bad_values(mvd: httpx.Client) -> None:
    ask(mvd, passport_check("7011", "123456"))
    ask(mvd, b"<broken")
    assert mvd.get("/_control").json()["queries"] == 2
    assert mvd.post("/_control", json={"error_rate": 2}).status_code == 422
    assert mvd.post("/_control", json={"latency_ms": -1}).status_code == 422
    assert mvd.post("/_control", json={"no_such_knob": 1}).status_code == 422
    assert set_knobs(mvd, reset=True)["queries"] == 0


def test_started_in_outage_then_unreachable(tmp_path: Path) -> None:
    mock = MockAgencyProcess(MOCK_MVD, tmp_path / "mock.log", "--outage", "--seed", "7")
    try:
        response = httpx.post(
            f"{mock.base_url}/query", content=to_bytes(passport_check("7011", "123456"))
        )
        assert response.status_code == 503
        assert httpx.get(f"{mock.base_url}/_control").json()["seed"] == 7
    finally:
        mock.stop()
    # uvicorn re-raises SIGTERM after its graceful shutdown.
    assert mock.process.returncode in (0, -signal.SIGTERM)
    with pytest.raises(httpx.ConnectError):
        httpx.post(f"{mock.base_url}/query", content=to_bytes(passport_check("7011", "123456")))


# --- schema, examples, data set (no process needed) ---------------------------------


@pytest.mark.parametrize("path", sorted(EXAMPLES.glob("*.xml")), ids=lambda p: p.name)
def test_examples_validate(path: Path) -> None:
    native_schema().validate(parse_secure(path.read_bytes()), path.name)


def test_dataset_is_deterministic_and_covers_every_case() -> None:
    dataset = build_dataset()
    assert dataset == build_dataset()
    assert build_dataset(seed=1) != dataset
    assert len(dataset.passports) >= 30
    statuses = {(p.status, p.reason) for p in dataset.passports}
    assert (StatusCode.VALID, None) in statuses
    assert {r for s, r in statuses if s is StatusCode.INVALID} == set(ReasonCode)
    assert set(FIXED_PEOPLE) <= set(dataset.people)
