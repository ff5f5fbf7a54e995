"""The ops REST API and the operator's CLI against a real ``smevbus serve`` on RabbitMQ and
PostgreSQL: 401 without an operator token, queues with a dead letter, ``smevbus queues``,
``smevbus kpi``, and ``smevbus dlq purge`` journaled with the operator's name.

A signed PORTAL sends a request over SOAP; the test, as ZAGS's consumer on the broker,
refuses it, so it lands in ZAGS's dead-letter queue and the gateway journals it.
Waits are bounded polls; no assertion depends on how long anything took.
"""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from gateway.client.http import SoapHttp
from gateway.client.participant import ParticipantClient
from gateway.core.clock import SystemClock
from gateway.crypto.devpki import init_dev_pki
from gateway.crypto.keystore import load_signer, load_verifier
from gateway.testing.processes import SMEVBUS, GatewayProcess, fresh_database, isolated_vhost
from gateway.transport.amqp import AmqpTransport
from gateway.transport.base import Direction
from gateway.xml.parse import parse_secure
from tests.integration import store_fixtures

postgres_url = store_fixtures.postgres_url

ROOT = Path(__file__).resolve().parents[2]
CONTENT = ROOT / "tests" / "data" / "content"
PARTICIPANTS = {"PORTAL": "portal", "ZAGS": "zags", "MVD_MIGR": "mvd", "FNS": "fns"}
TOKEN = "ops-secret-token"
WAIT = 30.0

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def keys(tmp_path_factory: pytest.TempPathFactory) -> Path:
    keys_dir = tmp_path_factory.mktemp("keys")
    init_dev_pki(keys_dir, {**PARTICIPANTS, "SMEVBUS": "bus"}, clock=SystemClock())
    return keys_dir


@pytest.fixture(scope="module")
def stack(
    keys: Path, amqp_url: str, postgres_url: str, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[tuple[GatewayProcess, str]]:
    with isolated_vhost(amqp_url) as vhost_url, fresh_database() as db_url:
        process = GatewayProcess(
            env={
                "SMEVBUS_TRANSPORT": "amqp",
                "SMEVBUS_AMQP_URL": vhost_url,
                "SMEVBUS_DATABASE_URL": db_url,
                "SMEVBUS_KEYS_DIR": str(keys),
                "SMEVBUS_OPS_TOKENS": json.dumps({TOKEN: "ivanov"}),
            },
            log_path=tmp_path_factory.mktemp("logs") / "gateway.log",
        )
        process.start()
        try:
            yield process, vhost_url
        finally:
            process.stop()


def smevbus(
    gateway: GatewayProcess, *args: str, token: str = TOKEN
) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "SMEVBUS_OPS_TOKEN": token, "COLUMNS": "200"}
    return subprocess.run(
        [str(SMEVBUS), *args, "--url", gateway.base_url],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


async def dead_letter_one(gateway: GatewayProcess, vhost_url: str, keys: Path) -> str:
    clock = SystemClock()
    async with SoapHttp(gateway.base_url + "/ws", timeout=30) as call:
        portal = ParticipantClient(
            signer=load_signer(keys, "PORTAL"),
            verifier=load_verifier(keys, clock),
            clock=clock,
            call=call,
        )
        content = parse_secure((CONTENT / "zags-birth-record.request.xml").read_bytes())
        sent = await portal.send_request(content)
    transport = await AmqpTransport.connect(vhost_url, clock=clock)
    try:
        await transport.declare(["ZAGS"])
        delivery = await transport.get(Direction.REQUESTS, "ZAGS")
        assert delivery is not None
        assert delivery.message.message_id == str(sent.message_id)
        await delivery.reject("the test refuses it")
    finally:
        await transport.close(grace=5)
    return str(sent.message_id)


async def journal_state(
    client: httpx.AsyncClient, message_id: str, state: str
) -> dict[str, object]:
    loop = asyncio.get_running_loop()
    deadline = loop.time() + WAIT
    while True:
        answer = await client.get(f"/api/v1/ops/trace/{message_id}")
        if answer.status_code == 200:
            [trace] = answer.json()["traces"]
            if trace["state"] == state:
                return dict(trace)
        assert loop.time() < deadline, f"{message_id} not {state} within {WAIT}s"
        await asyncio.sleep(0.1)


def test_ops_api_needs_an_operator_token(stack: tuple[GatewayProcess, str]) -> None:
    gateway, _ = stack
    for path in ("/api/v1/ops/queues", "/api/v1/kpi", "/api/v1/ops/overview"):
        answer = httpx.get(gateway.base_url + path, timeout=10)
        assert answer.status_code == 401
        assert answer.json()["code"] == "unauthenticated"
    wrong = smevbus(gateway, "queues", token="not-a-token")
    assert wrong.returncode == 1
    assert "unauthenticated" in wrong.stderr


async def test_dead_letter_shows_in_queues_and_purge_is_journaled_with_the_operator(
    stack: tuple[GatewayProcess, str], keys: Path
) -> None:
    gateway, vhost_url = stack
    message_id = await dead_letter_one(gateway, vhost_url, keys)
    async with httpx.AsyncClient(
        base_url=gateway.base_url, headers={"Authorization": f"Bearer {TOKEN}"}, timeout=30
    ) as client:
        await journal_state(client, message_id, "DEAD_LETTERED")
        queues = (await client.get("/api/v1/ops/queues")).json()["items"]
        zags = next(q for q in queues if q["name"] == "requests.ZAGS")
        assert (zags["ready"], zags["dead_letters"]) == (0, 1)

        listed = await asyncio.to_thread(smevbus, gateway, "queues")
        assert listed.returncode == 0, listed.stderr
        [row] = [line for line in listed.stdout.splitlines() if "requests.ZAGS" in line]
        assert [cell.strip() for cell in row.split("│")][-2] == "1"

        kpi = await asyncio.to_thread(smevbus, gateway, "kpi", "--format", "json")
        assert kpi.returncode == 0, kpi.stderr
        totals = [a for a in json.loads(kpi.stdout)["agencies"] if a["message_type"] is None]
        assert [(a["agency"], a["dead_lettered"]) for a in totals] == [("ZAGS", 1)]

        purged = await asyncio.to_thread(smevbus, gateway, "dlq", "purge", "ZAGS", "--yes")
        assert purged.returncode == 0, purged.stderr
        assert "1 dead letter(s) of requests.ZAGS purged" in purged.stdout

        trace = await journal_state(client, message_id, "PURGED")
        last = trace["transitions"][-1]  # type: ignore[index]
        assert (last["to_state"], last["actor"]) == ("PURGED", "ivanov")
        queues = (await client.get("/api/v1/ops/queues")).json()["items"]
        assert next(q for q in queues if q["name"] == "requests.ZAGS")["dead_letters"] == 0
