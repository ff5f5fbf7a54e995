"""Fan-outs through ``smevbus serve --workers 2``, as processes.

A SendResponse reaches whichever worker its adapter's connection landed on, and that
worker takes the reply: the replies of one service request are taken by both workers.
Each worker sees the other among the consumers of the portal's replies and so saves
each reply in its turn rather than wait for the request's other replies
(``SMEVBUS_AGGREGATOR_GATHER_MS``), which would come to the other worker;
every request still ends COMPLETED with each part answered once.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from gateway.testing.chain import Chain
from tests.integration import store_fixtures
from tests.integration.chain_fixtures import chain_of
from tests.integration.test_service_requests_e2e import APPLICANT, wait_final

postgres_url = store_fixtures.postgres_url
pytestmark = pytest.mark.integration

TOKEN = "portal-workers-token"
REQUESTS = 12
#: Longer than the gateway's look at the reply consumers (gateway/bus.py, every 5 s).
WITHIN_S = 30.0


@pytest.fixture(scope="module")
def chain(
    amqp_url: str, postgres_url: str, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Chain]:
    with chain_of(
        amqp_url,
        tmp_path_factory,
        token=TOKEN,
        gateway_env={"SMEVBUS_HTTP_WORKERS": "2"},
        pulling=(),
    ) as running:
        yield running


def gathering(log_path: Path) -> list[dict[str, Any]]:
    """The ``reply_gathering`` decisions the gateway's workers logged so far."""
    lines = log_path.read_text(encoding="utf-8").splitlines()
    events = [json.loads(line) for line in lines if '"reply_gathering"' in line]
    return [event for event in events if event.get("event") == "reply_gathering"]


async def test_two_workers_take_a_fan_outs_replies_each_in_its_turn(chain: Chain) -> None:
    loop = asyncio.get_running_loop()
    deadline = loop.time() + WITHIN_S
    # Each worker logs a decision when the count it sees changes: both must see two.
    while len([d for d in gathering(chain.gateway.log_path) if d["consumers"] == 2]) < 2:
        assert loop.time() < deadline, gathering(chain.gateway.log_path)
        await asyncio.sleep(0.2)  # the workers look every 5 s: poll, bounded
    assert all(
        d["window_ms"] == 0 for d in gathering(chain.gateway.log_path) if d["consumers"] == 2
    )

    async with httpx.AsyncClient(
        base_url=chain.gateway.base_url, timeout=30, headers={"Authorization": f"Bearer {TOKEN}"}
    ) as http:
        body = {"service": "child-birth-benefit", "applicant": APPLICANT}
        created = await asyncio.gather(
            *(http.post("/api/v1/service-requests", json=body) for _ in range(REQUESTS))
        )
        assert {reply.status_code for reply in created} == {202}
        views = [await wait_final(http, reply.json()["links"]["self"]) for reply in created]
        for view in views:
            assert (view["status"], view["completed_by"]) == ("COMPLETED", "all_answered")
            assert {part["status"] for part in view["parts"]} == {"ANSWERED"}
            for part in view["parts"]:
                trace = await http.get(f"/api/v1/messages/{part['message_id']}")
                states = [t["to_state"] for t in trace.raise_for_status().json()["transitions"]]
                assert states.count("RESPONDED") == 1  # answered once
                assert states[-1] == "RESPONSE_DELIVERED"
