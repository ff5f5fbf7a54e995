"""The adapter kit's XML-over-HTTP call, against an agency played by httpx.MockTransport."""

from collections.abc import Callable
from datetime import date

import httpx
import pytest
from lxml import etree

from adapters.fns.adapter import REPLIES
from adapters.fns.mock_service import fault_reply
from adapters.fns.native import FaultCode, inn_query, q, to_bytes
from adapters.sdk import AgencyError, AgencyUnavailable, XmlOverHttp

QUERY = inn_query("Иванов", "Иван", None, date(1990, 1, 2), "7011", "123456", query_id="q-1")


def agency(reply: Callable[[httpx.Request], httpx.Response]) -> XmlOverHttp:
    http = httpx.AsyncClient(transport=httpx.MockTransport(reply), base_url="http://fns")
    return XmlOverHttp(http, REPLIES)


def inn_reply(query_id: str) -> bytes:
    root = etree.Element(q("InnReply"), queryId=query_id)
    etree.SubElement(root, q("NotFound"))
    return to_bytes(root)


async def test_a_valid_reply_for_the_query_is_handed_back() -> None:
    sent: list[bytes] = []

    def reply(request: httpx.Request) -> httpx.Response:
        sent.append(request.content)
        return httpx.Response(200, content=inn_reply("q-1"))

    answer = await agency(reply).post("InnQuery", "/inn", QUERY)
    assert answer.find(q("NotFound")) is not None
    assert sent == [to_bytes(QUERY)]


async def test_a_reply_for_another_query_is_an_agency_error() -> None:
    call = agency(lambda _: httpx.Response(200, content=inn_reply("q-2")))
    with pytest.raises(AgencyError, match="answered query q-2, not q-1"):
        await call.post("InnQuery", "/inn", QUERY)


@pytest.mark.parametrize(
    ("code", "expected"),
    [
        (FaultCode.UNAVAILABLE, AgencyUnavailable),
        (FaultCode.INTERNAL, AgencyUnavailable),
        (FaultCode.BAD_QUERY, AgencyError),
    ],
)
async def test_faults_are_classified_by_code(code: FaultCode, expected: type[Exception]) -> None:
    body = to_bytes(fault_reply(code, "no"))
    call = agency(lambda _: httpx.Response(code.http_status, content=body))
    with pytest.raises(expected) as caught:
        await call.post("InnQuery", "/inn", QUERY)
    assert type(caught.value) is expected


async def test_a_body_that_is_not_xml_is_an_agency_error() -> None:
    call = agency(lambda _: httpx.Response(200, content=b"<InnReply"))
    with pytest.raises(AgencyError, match="malformed reply"):
        await call.post("InnQuery", "/inn", QUERY)
