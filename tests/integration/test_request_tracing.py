"""One service request followed across the bus's processes by its request id (issue 13).

The whole bus as processes (:func:`gateway.testing.chain.running_chain`: ``smevbus
serve``, the mock agencies, their adapters), logging JSON (``SMEVBUS_LOG_FORMAT`` left at
``auto``: their stderr is a file). A portal submits a service request with its own
``X-Request-ID``; the gateway answers with it, and the same id is on the gateway's lines
for the request (created, each part sent, each reply applied) and on the lines of every
adapter that answered its parts, next to the part's message id and message type: the
push-mode ones (MVD, FNS) read it from the message, the pull-mode one (ZAGS) from the
gateway's answer to its GetRequest. ``grep`` follows it from the portal to the agencies
and back.
"""

from __future__ import annotations

import asyncio
import json
from pathlib import Path
from typing import Any

import httpx
import pytest

from gateway.testing.chain import Chain, running_chain
from tests.integration import store_fixtures
from tests.integration.test_service_requests_e2e import APPLICANT, wait_final

postgres_url = store_fixtures.postgres_url
pytestmark = pytest.mark.integration

TOKEN = "tracing-token"
REQUEST_ID = "portal-trace-5d21c8"
#: The parts, and the adapter that answers each (ZAGS pulls, MVD and FNS are pushed to).
ANSWERED_BY = {
    "birth-record": ("zags", "ZAGS"),
    "parent-registration": ("mvd_migration", "MVD_MIGR"),
    "parent-inn": ("fns", "FNS"),
}


def json_lines(path: Path) -> list[dict[str, Any]]:
    """Every line of a process's log, each of which must be one JSON object."""
    return [json.loads(line) for line in path.read_text("utf-8").splitlines() if line.strip()]


async def submit(chain: Chain) -> tuple[httpx.Response, dict[str, Any]]:
    async with httpx.AsyncClient(
        base_url=chain.gateway.base_url,
        timeout=30,
        headers={"Authorization": f"Bearer {TOKEN}"},
    ) as http:
        created = await http.post(
            "/api/v1/service-requests",
            json={"service": "child-birth-benefit", "applicant": APPLICANT},
            headers={"X-Request-ID": REQUEST_ID},
        )
        assert created.status_code == 202, created.text
        return created, await wait_final(http, created.json()["links"]["self"])


def test_one_request_id_is_logged_by_the_gateway_and_the_adapters(
    amqp_url: str, postgres_url: str, tmp_path: Path
) -> None:
    logs = tmp_path / "logs"
    logs.mkdir()
    with running_chain(amqp_url, tmp_path / "keys", logs, api_tokens={TOKEN: "PORTAL"}) as chain:
        created, view = asyncio.run(submit(chain))

    assert created.headers["X-Request-ID"] == REQUEST_ID
    assert view["status"] == "COMPLETED", view
    service_request_id = view["id"]
    parts = {part["id"]: part["message_id"] for part in view["parts"]}

    gateway = [e for e in json_lines(logs / "gateway.log") if e.get("request_id") == REQUEST_ID]
    events = {e["event"] for e in gateway}
    assert {"service_request_created", "part_sent", "reply_applied"} <= events, events
    sent = {e["part"] for e in gateway if e["event"] == "part_sent"}
    assert sent == set(parts)
    # Every reply came back under the same id.
    applied = {e["part"] for e in gateway if e["event"] == "reply_applied"}
    assert applied == set(ANSWERED_BY), applied
    assert all(
        e["service_request_id"] == service_request_id
        for e in gateway
        if e["event"] in ("part_sent", "reply_applied")
    )

    for part, (adapter, participant) in ANSWERED_BY.items():
        lines = json_lines(logs / f"adapter-{adapter}.log")
        traced = [e for e in lines if e.get("request_id") == REQUEST_ID]
        settled = [e for e in traced if e["event"] == "request_settled"]
        assert len(settled) == 1, (adapter, traced)
        assert settled[0]["message_id"] == parts[part]
        assert settled[0]["message_type"].startswith("urn://")
        assert settled[0]["participant"] == participant
        assert settled[0]["outcome"] == "answered"
