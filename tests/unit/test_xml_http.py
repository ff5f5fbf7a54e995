"""The adapter kit's XML-over-HTTP call, against an agency played by a real aiohttp server."""

from collections.abc import AsyncIterator
from datetime import date

import pytest
from lxml import etree

from adapters.fns.adapter import REPLIES
from adapters.fns.mock_service import fault_reply
from adapters.fns.native import FaultCode, inn_query, q, to_bytes
from adapters.sdk import AgencyError, AgencyHttp, AgencyUnavailable, XmlOverHttp
from adapters.sdk.xml_http import env_proxy
from gateway.testing.processes import free_port
from tests.unit.agency_fixtures import Answer, PlayedAgency

QUERY = inn_query("Иванов", "Иван", None, date(1990, 1, 2), "7011", "123456", query_id="q-1")


@pytest.fixture
async def agency() -> AsyncIterator[PlayedAgency]:
    async with PlayedAgency(lambda _: (500, b"", {})) as played:
        yield played


def inn_reply(query_id: str) -> bytes:
    root = etree.Element(q("InnReply"), queryId=query_id)
    etree.SubElement(root, q("NotFound"))
    return to_bytes(root)


def client(agency: PlayedAgency) -> XmlOverHttp:
    return XmlOverHttp(AgencyHttp(agency.base_url + "/"), REPLIES)


async def ask(agency: PlayedAgency, answer: Answer) -> etree._Element:
    agency.answer = answer
    call = client(agency)
    try:
        return await call.post("InnQuery", "/inn", QUERY)
    finally:
        await call.http.aclose()


async def test_a_valid_reply_for_the_query_is_handed_back(agency: PlayedAgency) -> None:
    answer = await ask(agency, lambda _: (200, inn_reply("q-1"), {}))
    assert answer.find(q("NotFound")) is not None
    assert agency.sent == [to_bytes(QUERY)]


async def test_a_reply_for_another_query_is_an_agency_error(agency: PlayedAgency) -> None:
    with pytest.raises(AgencyError, match="answered query q-2, not q-1"):
        await ask(agency, lambda _: (200, inn_reply("q-2"), {}))


@pytest.mark.parametrize(
    ("code", "expected"),
    [
        (FaultCode.UNAVAILABLE, AgencyUnavailable),
        (FaultCode.INTERNAL, AgencyUnavailable),
        (FaultCode.BAD_QUERY, AgencyError),
    ],
)
async def test_faults_are_classified_by_code(
    agency: PlayedAgency, code: FaultCode, expected: type[Exception]
) -> None:
    body = to_bytes(fault_reply(code, "no"))
    with pytest.raises(expected) as caught:
        await ask(agency, lambda _: (code.http_status, body, {}))
    assert type(caught.value) is expected


@pytest.mark.parametrize(
    ("status", "expected"), [(502, AgencyUnavailable), (404, AgencyError), (302, AgencyError)]
)
async def test_a_status_without_a_reply_is_classified_by_status(
    agency: PlayedAgency, status: int, expected: type[Exception]
) -> None:
    # A redirect is not followed: the agency's XML interface has no business sending one.
    headers = {"Location": "http://127.0.0.1:1/elsewhere"} if status == 302 else {}
    with pytest.raises(expected, match=f"HTTP {status}") as caught:
        await ask(agency, lambda _: (status, b"<html>no</html>", headers))
    assert type(caught.value) is expected
    assert len(agency.sent) == 1


async def test_a_body_that_is_not_xml_is_an_agency_error(agency: PlayedAgency) -> None:
    with pytest.raises(AgencyError, match="malformed reply"):
        await ask(agency, lambda _: (200, b"<InnReply", {}))


async def test_a_closed_port_is_agency_unavailable() -> None:
    call = XmlOverHttp(AgencyHttp(f"http://127.0.0.1:{free_port()}"), REPLIES)
    with pytest.raises(AgencyUnavailable, match="agency unreachable"):
        await call.post("InnQuery", "/inn", QUERY)
    await call.http.aclose()


async def test_the_session_is_reopened_after_aclose(agency: PlayedAgency) -> None:
    agency.answer = lambda _: (200, inn_reply("q-1"), {})
    call = client(agency)
    await call.post("InnQuery", "/inn", QUERY)
    await call.http.aclose()
    await call.post("InnQuery", "/inn", QUERY)
    await call.http.aclose()
    assert len(agency.sent) == 2


async def test_an_oversize_answer_is_refused_unread(agency: PlayedAgency) -> None:
    endless = b"<InnReply>" + b"x" * (8 * REPLIES.max_bytes)
    with pytest.raises(AgencyError, match="malformed reply") as caught:
        await ask(agency, lambda _: (200, endless, {}))
    assert f"{REPLIES.max_bytes}" in str(caught.value)


async def test_the_environments_proxy_is_asked(
    agency: PlayedAgency, monkeypatch: pytest.MonkeyPatch
) -> None:
    """As httpx did: HTTP_PROXY is honoured (here the played agency is the proxy, and
    the agency's own name does not resolve), NO_PROXY exempts a host."""
    monkeypatch.setenv("HTTP_PROXY", agency.base_url)
    monkeypatch.delenv("NO_PROXY", raising=False)
    monkeypatch.delenv("no_proxy", raising=False)
    env_proxy.cache_clear()  # the environment is read once per URL
    agency.answer = lambda _: (200, inn_reply("q-1"), {})
    call = XmlOverHttp(AgencyHttp("http://fns.invalid"), REPLIES)
    try:
        await call.post("InnQuery", "/inn", QUERY)
        assert agency.hosts == ["fns.invalid"]
        monkeypatch.setenv("NO_PROXY", "fns.invalid")
        assert env_proxy("http://fns.invalid/inn") is None
        assert env_proxy("http://mvd.invalid/query") == agency.base_url
    finally:
        await call.http.aclose()
        env_proxy.cache_clear()
