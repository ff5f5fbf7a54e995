"""``GET /metrics`` of the gateway on the in-process bus: who may read it, and that the
counters and stage timings move with real round trips through the router, the
aggregator and the callbacks."""

from __future__ import annotations

from datetime import timedelta

import httpx
import pytest

from gateway.api.app import create_app
from gateway.api.operators import COOKIE
from gateway.config import Settings
from gateway.ops.metrics import CONTENT_TYPE
from gateway.testing.bus import (
    BIRTH,
    START,
    Bus,
    birth_request,
    birth_response,
    pump,
    send_request_body,
    soap,
    uuid1_at,
)
from gateway.testing.scrape import Samples, samples
from tests.unit.test_aggregator_service import SERVICE, World, submit, world

__all__ = ["world"]  # the real-aggregator fixture, re-used

OPERATOR = "operator-token"
SETTINGS = Settings(ops_tokens={OPERATOR: "ivanov"})
STAGES = ("parse", "verify", "schema", "journal", "publish", "deliver", "end_to_end")


def client(bus: Bus, settings: Settings = SETTINGS) -> httpx.AsyncClient:
    app = create_app(settings, bus.root)
    return httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://bus")


async def scrape(bus: Bus) -> Samples:
    async with client(bus) as http:
        response = await http.get("/metrics", headers={"Authorization": f"Bearer {OPERATOR}"})
    assert response.status_code == 200, response.text
    assert response.headers["content-type"] == CONTENT_TYPE
    return samples(response.text)


# --- who may read it ------------------------------------------------------------------


@pytest.mark.parametrize(
    "headers",
    [{}, {"Authorization": "Bearer not-a-token"}, {"Authorization": f"Basic {OPERATOR}"}],
    ids=["none", "unknown", "other_scheme"],
)
async def test_metrics_without_an_operator_token_is_401(bus: Bus, headers: dict[str, str]) -> None:
    async with client(bus) as http:
        response = await http.get("/metrics", headers=headers)
    assert response.status_code == 401
    assert response.headers["www-authenticate"] == "Bearer"
    assert response.json()["code"] == "unauthenticated"
    assert "smevbus_" not in response.text


async def test_an_operator_reads_metrics_by_bearer_token_or_ui_cookie(bus: Bus) -> None:
    async with client(bus) as http:
        by_token = await http.get("/metrics", headers={"Authorization": f"Bearer {OPERATOR}"})
        http.cookies.set(COOKIE, OPERATOR)
        by_cookie = await http.get("/metrics")
    for response in (by_token, by_cookie):
        assert response.status_code == 200
        assert samples(response.text).types["smevbus_messages"] == "counter"


async def test_no_operator_tokens_configured_closes_metrics(bus: Bus) -> None:
    async with client(bus, Settings()) as http:
        response = await http.get("/metrics", headers={"Authorization": f"Bearer {OPERATOR}"})
    assert response.status_code == 401


async def test_public_metrics_need_no_token(bus: Bus) -> None:
    async with client(bus, Settings(metrics_public=True)) as http:
        response = await http.get("/metrics")
    assert response.status_code == 200
    assert "smevbus_stage_duration_seconds" in samples(response.text).types


# --- what moves ---------------------------------------------------------------------------


async def test_a_round_trip_counts_both_messages_and_times_every_stage(bus: Bus) -> None:
    before = await scrape(bus)

    sent = await bus.portal.send_request(birth_request())
    delivery = await bus.zags.get_request()
    assert delivery is not None
    bus.clock.advance(timedelta(seconds=3))
    await bus.zags.send_response(delivery.reply_to, content=birth_response())
    await bus.zags.ack(delivery.metadata.message_id)
    got = await bus.portal.get_response()
    assert got is not None
    assert got.original_message_id == sent.message_id

    after = await scrape(bus)

    def moved(name: str, **labels: str) -> float:
        return after.value(name, **labels) - before.value(name, **labels)

    request = {"message_type": BIRTH, "sender": "PORTAL", "recipient": "ZAGS"}
    response = {"message_type": BIRTH, "sender": "ZAGS", "recipient": "PORTAL"}
    assert moved("smevbus_messages_total", **request, outcome="accepted") == 1
    assert moved("smevbus_messages_total", **response, outcome="accepted") == 1
    count = "smevbus_stage_duration_seconds_count"
    assert moved(count, stage="parse") >= 5  # SendRequest, GetRequest, SendResponse, Ack, ...
    assert moved(count, stage="verify") == moved(count, stage="parse")
    assert moved(count, stage="schema") == 2
    assert moved(count, stage="publish") == 2
    # Accepted, twice; the QUEUED marks are not on the path (the pulls moved both on).
    assert moved(count, stage="journal") >= 2
    assert moved(count, stage="deliver") == 2
    assert moved(count, stage="end_to_end") == 1
    # The fake clock's 3 s between the request and its answer.
    assert moved("smevbus_stage_duration_seconds_sum", stage="end_to_end") == 3.0
    assert moved("smevbus_faults_total", code="signature_invalid") == 0


async def test_a_refused_message_counts_its_fault_and_a_resubmission_its_duplicate(
    bus: Bus,
) -> None:
    message_id, other = uuid1_at(START), uuid1_at(START + timedelta(seconds=1))
    raw = soap(send_request_body(bus.pki.signer("PORTAL"), message_id=message_id))
    await bus.send(raw)
    before = await scrape(bus)

    again = await bus.send(raw)  # the same signed request, resent
    # Another MessageID under the same signature: the signed content changed.
    forged = await bus.send(raw.replace(str(message_id).encode(), str(other).encode()))

    after = await scrape(bus)
    assert again.ok
    assert not forged.ok
    faults = after.total("smevbus_faults_total") - before.total("smevbus_faults_total")
    assert faults == 1
    assert (
        after.value("smevbus_faults_total", code=forged.code or "")
        - before.value("smevbus_faults_total", code=forged.code or "")
        == 1
    )
    labels = {"message_type": BIRTH, "sender": "PORTAL", "recipient": "ZAGS"}
    duplicate = "smevbus_messages_total"
    assert (
        after.value(duplicate, **labels, outcome="duplicate")
        - before.value(duplicate, **labels, outcome="duplicate")
        == 1
    )
    refused = after.total(duplicate, outcome="refused") - before.total(duplicate, outcome="refused")
    assert refused == 1


async def test_a_service_request_that_completes_is_counted_once(world: World) -> None:
    labels = {"service": SERVICE, "status": "COMPLETED", "completed_by": "all_answered"}
    before = await scrape(world.bus)

    await submit(world)
    await world.answer_all()
    assert await pump(world.bus, world.agg) == 3

    after = await scrape(world.bus)
    name = "smevbus_service_requests_total"
    assert after.value(name, **labels) - before.value(name, **labels) == 1
    assert after.total(name) - before.total(name) == 1
