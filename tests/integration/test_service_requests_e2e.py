"""A portal's service request over REST, fanned out to three agencies, as processes.

``smevbus serve`` (RabbitMQ + PostgreSQL, the aggregator pumping PORTAL's replies) +
the mock agencies + their adapters (ZAGS by SOAP pull, MVD and FNS by push): one
``child-birth-benefit`` request becomes three signed bus messages whose answers come
back into one result; every part's message has its lifecycle trace.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from tests.integration import store_fixtures
from tests.integration.chain import Chain, running_chain

postgres_url = store_fixtures.postgres_url
pytestmark = pytest.mark.integration

TOKEN = "portal-e2e-token"
APPLICANT = {
    "child": {
        "last_name": "Смирнова",
        "first_name": "Анна",
        "middle_name": "Сергеевна",
        "birth_date": "2019-03-14",
    },
    "parent": {
        "last_name": "Смирнова",
        "first_name": "Елена",
        "middle_name": "Викторовна",
        "birth_date": "1991-07-02",
        "passport": {"series": "7011", "number": "123456"},
    },
}


@pytest.fixture(scope="module")
def chain(
    amqp_url: str, postgres_url: str, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Chain]:
    with running_chain(
        amqp_url,
        tmp_path_factory.mktemp("keys"),
        tmp_path_factory.mktemp("logs"),
        api_tokens={TOKEN: "PORTAL"},
    ) as running:
        yield running


async def wait_final(http: httpx.AsyncClient, location: str) -> dict[str, Any]:
    """Poll the service request until it is final (bounded)."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + 90
    while loop.time() < deadline:
        view: dict[str, Any] = (await http.get(location)).raise_for_status().json()
        if view["status"] != "PENDING":
            return view
        await asyncio.sleep(0.2)  # the agencies are answering: poll, bounded
    raise AssertionError(f"{location} still PENDING after 90 s")


async def test_child_birth_benefit_is_assembled_from_three_agencies(chain: Chain) -> None:
    headers = {"Idempotency-Key": "e2e-1"}
    async with httpx.AsyncClient(
        base_url=chain.gateway.base_url,
        timeout=30,
        headers={"Authorization": f"Bearer {TOKEN}"},
    ) as http:
        body = {"service": "child-birth-benefit", "applicant": APPLICANT}
        created = await http.post("/api/v1/service-requests", json=body, headers=headers)
        assert created.status_code == 202, created.text
        again = await http.post("/api/v1/service-requests", json=body, headers=headers)
        assert again.json()["id"] == created.json()["id"]

        view = await wait_final(http, created.json()["links"]["self"])
        assert view["status"] == "COMPLETED", view
        assert view["completed_by"] == "all_answered"
        parts = {part["id"]: part for part in view["parts"]}
        assert {p["status"] for p in parts.values()} == {"ANSWERED"}
        result = view["result"]
        assert result["birth_act_number"] == "120197100000101234005"
        assert result["parent_inn"] == "710512345678"

        trace = await http.get(f"/api/v1/messages/{parts['birth-record']['message_id']}")
        states = [t["to_state"] for t in trace.json()["transitions"]]
        assert states[:3] == ["ACCEPTED", "QUEUED", "DELIVERED"]
        assert states[-1] == "RESPONSE_DELIVERED"


async def test_requests_need_a_token(chain: Chain) -> None:
    async with httpx.AsyncClient(base_url=chain.gateway.base_url, timeout=30) as http:
        refused = await http.post(
            "/api/v1/service-requests", json={"service": "passport-check", "applicant": {}}
        )
    assert refused.status_code == 401
    assert refused.headers["content-type"].startswith("application/problem+json")
