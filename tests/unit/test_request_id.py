"""The request id: accepted or made at the HTTP door, answered, logged, and carried on
the bus to the provider's adapter and back with its answer."""

from __future__ import annotations

import io
import json
from collections.abc import Mapping

import httpx
import pytest
import structlog
from lxml import etree
from starlette.types import Receive, Scope, Send

from adapters.sdk.adapter import Answer, Handler, RequestContext
from adapters.sdk.push import PushSource
from adapters.sdk.runner import AdapterRunner, OutcomeKind
from gateway import request_id
from gateway.api import request_id as http_request_id
from gateway.logs import configure_logging
from gateway.testing.bus import BIRTH, Bus, birth_request, birth_response
from gateway.transport.base import HEADER_REQUEST_ID, Direction

#: Bounds a wait for a delivery that is expected.
FOUND = 10.0


@pytest.mark.parametrize("offered", ["req-1", "0f8e7d6c5b4a", "portal:2026-12-03.7"])
def test_a_clients_usable_id_is_kept(offered: str) -> None:
    assert request_id.accepted(offered) == offered


@pytest.mark.parametrize("offered", [None, "", "x" * 129, "has space", "semi;colon", "ü"])
def test_an_unusable_or_missing_id_is_replaced_by_a_new_one(offered: str | None) -> None:
    made = request_id.accepted(offered)
    assert made != offered
    assert len(made) == 32
    int(made, 16)


def test_bound_restores_the_outer_id_after_adopt_and_after_an_error() -> None:
    def adopt_and_fail() -> None:
        with request_id.bound("inner"):
            request_id.adopt("adopted")
            assert request_id.current() == "adopted"
            raise KeyError("fails inside")

    with request_id.bound("outer"):
        with pytest.raises(KeyError):
            adopt_and_fail()
        assert request_id.current() == "outer"
    assert request_id.current() is None


def test_json_lines_carry_the_bound_request_id_and_auto_means_json_off_a_terminal() -> None:
    out = io.StringIO()
    configure_logging(level="INFO", stream=out)  # fmt auto; a StringIO is no terminal
    log = structlog.get_logger("test")
    with request_id.bound("req-42"), structlog.contextvars.bound_contextvars(message_id="m-1"):
        log.info("inside")
    log.info("outside")
    inside, outside = (json.loads(line) for line in out.getvalue().splitlines())
    assert inside["event"] == "inside"
    assert inside["request_id"] == "req-42"
    assert inside["message_id"] == "m-1"
    assert "request_id" not in outside


async def test_every_http_exchange_runs_with_its_request_id_and_answers_it() -> None:
    seen: list[str | None] = []

    async def app(scope: Scope, receive: Receive, send: Send) -> None:
        seen.append(request_id.current())
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await send({"type": "http.response.body", "body": b"ok"})

    async def front(scope: Scope, receive: Receive, send: Send) -> None:
        await http_request_id.serve(app, scope, receive, send)

    transport = httpx.ASGITransport(app=front)
    async with httpx.AsyncClient(transport=transport, base_url="http://gw") as http:
        given = await http.get("/", headers={"X-Request-ID": "portal-77"})
        made = await http.get("/")
        refused = await http.get("/", headers={"X-Request-ID": "x" * 200})
    assert given.headers["X-Request-ID"] == "portal-77"
    assert len(made.headers["X-Request-ID"]) == 32
    assert refused.headers["X-Request-ID"] not in ("x" * 200, made.headers["X-Request-ID"])
    assert seen == [h.headers["X-Request-ID"] for h in (given, made, refused)]
    assert request_id.current() is None


async def test_a_pull_answers_with_the_id_of_the_message_it_handed_out() -> None:
    """GetRequest's wire format has no place for the id: the gateway adopts the
    message's for the rest of the exchange and answers with it; a malformed one is not
    adopted."""

    async def app(scope: Scope, receive: Receive, send: Send) -> None:
        request_id.adopt(scope["path"].strip("/") or None)
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await send({"type": "http.response.body", "body": b"ok"})

    async def front(scope: Scope, receive: Receive, send: Send) -> None:
        await http_request_id.serve(app, scope, receive, send)

    transport = httpx.ASGITransport(app=front)
    async with httpx.AsyncClient(transport=transport, base_url="http://gw") as http:
        pulled = await http.get("/req-trace-9", headers={"X-Request-ID": "adapter-poll"})
        empty = await http.get("/", headers={"X-Request-ID": "adapter-poll"})
        malformed = await http.get("/bad%20id", headers={"X-Request-ID": "adapter-poll"})
    assert pulled.headers["X-Request-ID"] == "req-trace-9"
    assert empty.headers["X-Request-ID"] == "adapter-poll"
    assert malformed.headers["X-Request-ID"] == "adapter-poll"
    assert request_id.current() is None


def test_the_client_remembers_what_the_gateway_answered() -> None:
    request_id.note_answer("req-trace-9")
    assert request_id.answered() == "req-trace-9"
    request_id.note_answer("not acceptable")
    assert request_id.answered() is None


class BirthRecords:
    """A provider answering every birth record request with the sample answer."""

    name = "births"

    def __init__(self) -> None:
        self.seen: list[str | None] = []

    def handlers(self) -> Mapping[str, Handler]:
        async def handle(request: etree._Element, context: RequestContext) -> Answer:
            self.seen.append(request_id.current())
            return birth_response()

        return {BIRTH: handle}


async def test_the_request_id_goes_to_the_adapter_and_comes_back_with_its_answer(
    bus: Bus,
) -> None:
    with request_id.bound("req-trace-1"):
        await bus.portal.send_request(birth_request())
    await bus.portal.send_request(birth_request())  # none bound: none published

    adapter = BirthRecords()
    push = PushSource(bus.transport, "ZAGS", bus.verifier, clock=bus.clock, wait=FOUND)
    runner = AdapterRunner(adapter, bus.zags, source=push)
    try:
        for _ in range(2):
            outcome = await runner.run_once()
            assert outcome is not None
            assert outcome.kind is OutcomeKind.ANSWERED
    finally:
        await push.close()

    assert adapter.seen[0] == "req-trace-1"
    # A request without one is answered under a new id, so the answer can be followed.
    assert adapter.seen[1] not in (None, "req-trace-1")
    answers = []
    while delivery := await bus.transport.get(Direction.RESPONSES, "PORTAL"):
        answers.append(delivery.message.headers.get(HEADER_REQUEST_ID))
        await delivery.ack()
    assert answers == adapter.seen
    assert request_id.current() is None
