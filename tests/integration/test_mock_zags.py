"""The mock ZAGS registry: its own SOAP interface, its data set, and its failure knobs.

Most tests run the mock as a real separate process (``python -m
adapters.zags.mock_service --port N`` on a free 127.0.0.1 port) and talk to it with a
zeep client built from its ``?wsdl`` URL, as the ZAGS adapter will. The tests at the end
run the app in-process (ASGI) to check every answer of the data set against the XSD.
Nothing here needs RabbitMQ or PostgreSQL.
"""

from __future__ import annotations

import functools
import re
from collections.abc import Iterator
from datetime import date
from pathlib import Path
from typing import Any

import httpx
import pytest
import zeep
import zeep.exceptions
from lxml import etree
from zeep.plugins import HistoryPlugin

from adapters.zags.mock import LATENCY_HEADER, MockZagsConfig, create_mock_zags
from adapters.zags.mock.dataset import Registry, build_registry, fixed_registry
from adapters.zags.mock.schema import NAMESPACE, compiled_schema, wsdl_path
from adapters.zags.mock.search import Act
from gateway.testing.processes import MockAgencyProcess, free_port

REPO = Path(__file__).resolve().parents[2]
CONTENT = REPO / "tests" / "data" / "content"
ZR = f"{{{NAMESPACE}}}"
SOAP11 = "http://schemas.xmlsoap.org/soap/envelope/"
DEFAULT_KNOBS = {"latency_ms": 0, "error_rate": 0.0, "outage": False, "malformed": False}


@pytest.fixture(scope="module")
def mock_process(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """The mock as a separate process; yields its base URL."""
    log = tmp_path_factory.mktemp("mock_zags") / "mock_zags.log"
    mock = MockAgencyProcess("adapters.zags.mock_service", log, health="/_health")
    try:
        yield mock.base_url
    finally:
        mock.stop()


@pytest.fixture
def mock_url(mock_process: str) -> Iterator[str]:
    """The running mock with every knob at its default before and after the test."""
    httpx.post(f"{mock_process}/_control", json=DEFAULT_KNOBS, timeout=5).raise_for_status()
    yield mock_process
    httpx.post(f"{mock_process}/_control", json=DEFAULT_KNOBS, timeout=5).raise_for_status()


@pytest.fixture(scope="module")
def history() -> HistoryPlugin:
    return HistoryPlugin()


@pytest.fixture(scope="module")
def client(mock_process: str, history: HistoryPlugin) -> zeep.Client:
    """One zeep client for the module, built from the mock's ``?wsdl`` URL."""
    transport = zeep.Transport(timeout=10, operation_timeout=10)
    settings = zeep.Settings(forbid_dtd=True, forbid_entities=True, forbid_external=True)
    return zeep.Client(
        f"{mock_process}/zags?wsdl", transport=transport, settings=settings, plugins=[history]
    )


def _control(base_url: str, **knobs: Any) -> dict[str, Any]:
    response = httpx.post(f"{base_url}/_control", json=knobs, timeout=5)
    response.raise_for_status()
    state: dict[str, Any] = response.json()
    return state


def _fault_code(fault: zeep.exceptions.Fault) -> str | None:
    detail: etree._Element | None = fault.detail
    assert detail is not None
    return detail.findtext(f"{ZR}registryFault/{ZR}code")


ANNA = {
    "surname": "Смирнова",
    "givenName": "Анна",
    "patronymic": "Сергеевна",
    "dateOfBirth": date(2019, 3, 14),
}


# --- the interface, over a real process -------------------------------------------------


def test_wsdl_from_the_mock_points_at_the_mock(mock_url: str, client: zeep.Client) -> None:
    assert client.service._binding_options["address"] == f"{mock_url}/zags"
    operations = set(client.wsdl.bindings[f"{ZR}ZagsRegistrySoapBinding"]._operations)
    assert operations == {"FindBirthRecord", "FindMarriageRecord", "FindDeathRecord"}


def test_birth_record_of_the_demo_child_is_found(mock_url: str, client: zeep.Client) -> None:
    result = client.service.FindBirthRecord(requestId="req-1", child=ANNA)

    assert result.requestId == "req-1"
    assert result.totalFound == 1
    act = result.birthAct[0]
    assert act.actNumber == "120197100000101234005"
    assert act.actDate == date(2019, 3, 20)
    assert (act.officeCode, act.officeName) == (
        "R7100033",
        "Отдел ЗАГС по городу Туле комитета ЗАГС Тульской области",
    )
    assert (act.child.sex, act.child.placeOfBirth) == (
        "F",
        "Российская Федерация, Тульская область, город Тула",
    )
    assert (act.mother.surname, act.mother.givenName, act.mother.dateOfBirth) == (
        "Смирнова",
        "Елена",
        date(1991, 7, 2),
    )
    assert (act.father.givenName, act.father.patronymic, act.father.dateOfBirth) == (
        "Сергей",
        "Александрович",
        date(1989, 11, 23),
    )
    assert (act.certificate.series, act.certificate.number) == ("II-БО", "512347")


def test_birth_record_by_act_number_alone(mock_url: str, client: zeep.Client) -> None:
    result = client.service.FindBirthRecord(actNumber="120197100000101234005")
    assert [a.child.givenName for a in result.birthAct] == ["Анна"]


def test_birth_record_names_match_regardless_of_case_and_yo(
    mock_url: str, client: zeep.Client
) -> None:
    key = {**ANNA, "surname": "  СМИРНОВА ", "givenName": "анна"}
    assert client.service.FindBirthRecord(child=key).totalFound == 1


@pytest.mark.parametrize(
    "change",
    [{"patronymic": "Дмитриевна"}, {"dateOfBirth": date(2019, 3, 15)}, {"surname": "Смирнов"}],
)
def test_birth_record_not_found_is_an_empty_answer(
    mock_url: str, client: zeep.Client, change: dict[str, Any]
) -> None:
    result = client.service.FindBirthRecord(child={**ANNA, **change})
    assert result.totalFound == 0
    assert result.birthAct == []


def test_marriage_record_found_by_married_surname(mock_url: str, client: zeep.Client) -> None:
    result = client.service.FindMarriageRecord(
        husband={"surname": "Кузнецов", "givenName": "Дмитрий", "dateOfBirth": date(1988, 5, 9)},
        wife={"surname": "Кузнецова", "givenName": "Ольга", "patronymic": "Павловна"},
        marriageDate=date(2015, 8, 15),
    )
    assert result.totalFound == 1
    act = result.marriageAct[0]
    assert (act.actNumber, act.officeCode) == ("415", "R7100041")
    assert (act.wife.surnameBefore, act.wife.surnameAfter) == ("Орлова", "Кузнецова")
    assert act.divorceDate is None


def test_marriage_record_found_by_maiden_surname(mock_url: str, client: zeep.Client) -> None:
    result = client.service.FindMarriageRecord(wife={"surname": "Орлова", "givenName": "Ольга"})
    assert [a.actNumber for a in result.marriageAct] == ["415"]


def test_marriage_of_the_demo_childs_parents(mock_url: str, client: zeep.Client) -> None:
    result = client.service.FindMarriageRecord(
        husband={"surname": "Смирнов", "givenName": "Сергей", "dateOfBirth": date(1989, 11, 23)},
        wife={"surname": "Смирнова", "givenName": "Елена", "dateOfBirth": date(1991, 7, 2)},
    )
    assert result.totalFound == 1
    assert result.marriageAct[0].wife.surnameBefore == "Белова"


def test_marriage_record_not_found(mock_url: str, client: zeep.Client) -> None:
    result = client.service.FindMarriageRecord(
        husband={"surname": "Кузнецов", "givenName": "Дмитрий"},
        marriageDate=date(2016, 8, 15),
    )
    assert (result.totalFound, result.marriageAct) == (0, [])


def test_death_record_found(mock_url: str, client: zeep.Client) -> None:
    result = client.service.FindDeathRecord(
        deceased={
            "surname": "Волков",
            "givenName": "Николай",
            "patronymic": "Петрович",
            "dateOfBirth": date(1941, 2, 17),
        },
        dateOfDeath=date(2023, 10, 4),
    )
    assert result.totalFound == 1
    act = result.deathAct[0]
    assert (act.actNumber, act.actDate) == ("170237100000200871004", date(2023, 10, 5))
    assert act.deceased.sex == "M"
    assert act.placeOfDeath == "Российская Федерация, Тульская область, город Тула"


def test_death_record_not_found(mock_url: str, client: zeep.Client) -> None:
    result = client.service.FindDeathRecord(deceased={**ANNA})
    assert (result.totalFound, result.deathAct) == (0, [])


def test_request_without_search_keys_is_a_client_fault(mock_url: str, client: zeep.Client) -> None:
    with pytest.raises(zeep.exceptions.Fault) as caught:
        client.service.FindDeathRecord(dateOfDeath=date(2023, 10, 4))
    assert caught.value.code == "soap:Client"
    assert _fault_code(caught.value) == "INVALID_REQUEST"


@pytest.mark.parametrize(
    ("body", "code"),
    [
        (
            b'<?xml version="1.0"?><!DOCTYPE x [<!ENTITY e "boom">]>'
            b'<s:Envelope xmlns:s="http://schemas.xmlsoap.org/soap/envelope/"><s:Body/>'
            b"</s:Envelope>",
            "INVALID_REQUEST",
        ),
        (b"<not-closed>", "INVALID_REQUEST"),
        (
            b'<s:Envelope xmlns:s="http://schemas.xmlsoap.org/soap/envelope/"><s:Body>'
            b'<FindPassport xmlns="urn://zags.example/registry/1.0"/></s:Body></s:Envelope>',
            "UNKNOWN_OPERATION",
        ),
        (
            b'<s:Envelope xmlns:s="http://schemas.xmlsoap.org/soap/envelope/"><s:Body>'
            b'<FindBirthRecordRequest xmlns="urn://zags.example/registry/1.0">'
            b"<actNumber>12A</actNumber></FindBirthRecordRequest></s:Body></s:Envelope>",
            "INVALID_REQUEST",
        ),
    ],
    ids=["doctype", "not-well-formed", "unknown-operation", "schema-violation"],
)
def test_bad_requests_are_refused_with_a_client_fault(
    mock_url: str, body: bytes, code: str
) -> None:
    response = httpx.post(
        f"{mock_url}/zags", content=body, headers={"Content-Type": "text/xml"}, timeout=5
    )
    assert response.status_code == 500
    envelope = etree.fromstring(response.content)
    fault = envelope.find(f"{{{SOAP11}}}Body/{{{SOAP11}}}Fault")
    assert fault is not None
    assert fault.findtext("faultcode") == "soap:Client"
    assert fault.findtext(f"detail/{ZR}registryFault/{ZR}code") == code


# --- the knobs ---------------------------------------------------------------------------


def test_error_rate_one_answers_every_call_with_a_server_fault(
    mock_url: str, client: zeep.Client
) -> None:
    before = _control(mock_url)["stats"]["injected_errors"]
    _control(mock_url, error_rate=1.0)

    for _ in range(3):
        with pytest.raises(zeep.exceptions.Fault) as caught:
            client.service.FindBirthRecord(child=ANNA)
        assert caught.value.code == "soap:Server"
        assert _fault_code(caught.value) == "INTERNAL_ERROR"

    assert _control(mock_url)["stats"]["injected_errors"] == before + 3
    raw = httpx.post(f"{mock_url}/zags", content=b"<x/>", timeout=5)
    assert raw.status_code == 500


def test_error_draw_is_reproducible_from_its_seed(mock_url: str, client: zeep.Client) -> None:
    def outcomes() -> list[bool]:
        failed = []
        for _ in range(12):
            try:
                client.service.FindBirthRecord(child=ANNA)
                failed.append(False)
            except zeep.exceptions.Fault:
                failed.append(True)
        return failed

    _control(mock_url, error_rate=0.5, seed=2024)
    first = outcomes()
    _control(mock_url, seed=2024)
    assert outcomes() == first
    assert True in first
    assert False in first


def test_malformed_answers_make_zeep_raise_an_xml_error(mock_url: str, client: zeep.Client) -> None:
    _control(mock_url, malformed=True)
    with pytest.raises(zeep.exceptions.TransportError, match="invalid XML") as caught:
        client.service.FindBirthRecord(child=ANNA)
    assert isinstance(caught.value.__context__, zeep.exceptions.XMLSyntaxError)
    assert caught.value.status_code == 200


def test_outage_answers_503_until_it_ends(mock_url: str, client: zeep.Client) -> None:
    _control(mock_url, outage=True)
    with pytest.raises(zeep.exceptions.TransportError) as caught:
        client.service.FindBirthRecord(child=ANNA)
    assert caught.value.status_code == 503
    # The WSDL stays up, so a client can still be built during an outage.
    assert httpx.get(f"{mock_url}/zags?wsdl", timeout=5).status_code == 200

    _control(mock_url, outage=False)
    assert client.service.FindBirthRecord(child=ANNA).totalFound == 1


def test_unreachable_registry_is_a_connection_error(client: zeep.Client) -> None:
    dead = client.create_service(
        f"{ZR}ZagsRegistrySoapBinding", f"http://127.0.0.1:{free_port()}/zags"
    )
    # requests' ConnectionError (zeep's synchronous transport) is an OSError.
    with pytest.raises(OSError, match="Connection refused"):
        dead.FindBirthRecord(child=ANNA)


def test_latency_is_applied_and_reported(
    mock_url: str, client: zeep.Client, history: HistoryPlugin
) -> None:
    state = _control(mock_url, latency_ms=150)
    assert state["latency_ms"] == 150

    assert client.service.FindBirthRecord(child=ANNA).totalFound == 1
    received = history.last_received
    assert received is not None
    assert received["http_headers"][LATENCY_HEADER] == "150"
    assert httpx.get(f"{mock_url}/_control", timeout=5).json()["latency_ms"] == 150


@pytest.mark.parametrize(
    "body", [{"error_rate": 1.5}, {"latency_ms": -1}, {"outages": True}, {"seed": "x"}]
)
def test_control_refuses_bad_knobs(mock_url: str, body: dict[str, Any]) -> None:
    response = httpx.post(f"{mock_url}/_control", json=body, timeout=5)
    assert response.status_code == 422
    assert _control(mock_url)["error_rate"] == 0.0


# --- in-process: the local WSDL, the XSD against every answer, the data set --------------


def test_local_wsdl_loads_with_zeep_without_network() -> None:
    settings = zeep.Settings(forbid_dtd=True, forbid_entities=True, forbid_external=True)
    local = zeep.Client(str(wsdl_path()), settings=settings)
    assert local.service._binding_options["address"] == "http://localhost/zags"
    assert local.get_element(f"{ZR}FindDeathRecordRequest") is not None


@functools.cache
def _local_client() -> zeep.Client:
    return zeep.Client(str(wsdl_path()))


def _envelope(operation: str, **fields: Any) -> bytes:
    """A request built by zeep from the local WSDL, as the adapter will build it."""
    local = _local_client()
    message = local.create_message(local.service, operation, **fields)
    return etree.tostring(message)


def _body_element(content: bytes) -> etree._Element:
    element = etree.fromstring(content).find(f"{{{SOAP11}}}Body")
    assert element is not None
    return element[0]


async def _post(app: Any, content: bytes) -> httpx.Response:
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://mock") as http:
        return await http.post("/zags", content=content)


async def test_every_record_of_the_data_set_answers_schema_valid() -> None:
    app = create_mock_zags(MockZagsConfig())
    registry = app.state.mock.registry
    schema = compiled_schema()
    kinds = [
        ("FindBirthRecord", registry.births, "birthAct"),
        ("FindMarriageRecord", registry.marriages, "marriageAct"),
        ("FindDeathRecord", registry.deaths, "deathAct"),
    ]
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://mock") as http:
        for operation, acts, element in kinds:
            for act in acts:
                request = _envelope(operation, actNumber=act.act_number)
                response = await http.post("/zags", content=request)
                assert response.status_code == 200
                answer = _body_element(response.content)
                assert schema.validate(answer), (act.act_number, schema.error_log)
                assert len(answer.findall(f"{ZR}{element}")) == 1


async def test_not_found_and_fault_answers_are_schema_valid() -> None:
    app = create_mock_zags()
    schema = compiled_schema()

    empty = await _post(app, _envelope("FindDeathRecord", actNumber="999"))
    assert schema.validate(_body_element(empty.content)), schema.error_log

    fault = await _post(app, _envelope("FindDeathRecord"))
    assert fault.status_code == 500
    detail = _body_element(fault.content).find(f"detail/{ZR}registryFault")
    assert detail is not None
    assert schema.validate(detail), schema.error_log


async def test_served_wsdl_is_self_contained_and_points_at_the_server() -> None:
    transport = httpx.ASGITransport(app=create_mock_zags())
    async with httpx.AsyncClient(transport=transport, base_url="http://mock:8000") as http:
        wsdl = etree.fromstring((await http.get("/zags?wsdl")).content)
        address = wsdl.find(".//{http://schemas.xmlsoap.org/wsdl/soap/}address")
        assert address is not None
        assert address.get("location") == "http://mock:8000/zags"
        assert wsdl.xpath("//@schemaLocation") == []
        inlined = wsdl.find("{http://schemas.xmlsoap.org/wsdl/}types/{*}schema")
        assert inlined is not None
        assert inlined.get("targetNamespace") == NAMESPACE

        schema = await http.get("/zags?xsd=zags-registry-1.0.xsd")
        assert schema.status_code == 200
        assert etree.fromstring(schema.content).get("targetNamespace") == NAMESPACE
        assert (await http.get("/zags?xsd=../../etc/passwd")).status_code == 404
        assert (await http.get("/zags")).status_code == 404


def _all_acts(registry: Registry) -> list[Act]:
    return [*registry.births, *registry.marriages, *registry.deaths]


def test_data_set_is_deterministic_and_consistent() -> None:
    registry = build_registry()
    assert registry == build_registry()
    assert registry != build_registry(seed=1)
    assert len(registry.births) >= 30
    assert len(registry.marriages) >= 10
    assert len(registry.deaths) >= 5

    numbers = [a.act_number for a in _all_acts(registry)]
    assert len(numbers) == len(set(numbers))
    for birth in registry.births:
        assert birth.act_date >= birth.child.date_of_birth
        for parent in (birth.mother, birth.father):
            assert parent is not None
            assert parent.date_of_birth < birth.child.date_of_birth
        assert birth.father is not None
        assert birth.child.surname.startswith(birth.father.surname)
    for death in registry.deaths:
        assert death.deceased.date_of_birth < death.date_of_death <= death.act_date
    for marriage in registry.marriages:
        assert marriage.divorce_date is None or marriage.divorce_date > marriage.marriage_date


def test_data_set_values_fit_the_bus_types() -> None:
    """Whatever the adapter maps from the registry must pass the bus XSDs."""
    name = re.compile(r"^[^\W\d_][^\W\d_\- '.]*$")
    certificate = re.compile(r"^[IVXLC]{1,5}-[А-ЯЁ]{2}$")
    registry = build_registry()
    names: list[str | None] = []
    for birth in registry.births:
        for p in (birth.child, birth.mother, birth.father):
            assert p is not None
            names += [p.surname, p.given_name, p.patronymic]
    for marriage in registry.marriages:
        for s in (marriage.husband, marriage.wife):
            names += [s.surname_before, s.surname_after, s.given_name, s.patronymic]
    for death in registry.deaths:
        names += [death.deceased.surname, death.deceased.given_name, death.deceased.patronymic]
    assert all(n is None or name.match(n) for n in names)
    acts = _all_acts(registry)
    assert all(a.certificate is None or certificate.match(a.certificate.series) for a in acts)
    assert all(re.fullmatch(r"[A-Z0-9]{4,12}", a.office.code) for a in acts)


@pytest.mark.parametrize("kind", ["birth", "marriage", "death"])
def test_fixed_records_carry_the_bus_samples_values(kind: str) -> None:
    """The mock holds exactly the records of ``tests/data/content/zags-*.response.xml``."""
    sample = etree.parse(str(CONTENT / f"zags-{kind}-record.response.xml")).getroot()
    ns = {"t": etree.QName(sample).namespace}
    record = sample[0]
    fixed = fixed_registry()
    number = record.findtext("t:ActRecord/t:Number", None, ns)
    [match] = [a for a in _all_acts(fixed) if a.act_number == number]
    assert type(match).__name__.lower().startswith(kind)
    assert match.act_date.isoformat() == record.findtext("t:ActRecord/t:Date", None, ns)
    assert match.office.code == record.findtext("t:RegistryOffice/t:Code", None, ns)
    assert match.office.name == record.findtext("t:RegistryOffice/t:Name", None, ns)
    assert match.certificate is not None
    assert match.certificate.number == record.findtext("t:Certificate/t:Number", None, ns)
    assert match.certificate.series == record.findtext("t:Certificate/t:Series", None, ns)
