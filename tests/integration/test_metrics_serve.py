"""``/metrics``, ``/health`` and ``/ready`` of real processes on RabbitMQ and PostgreSQL.

A ``smevbus serve`` gateway (queue figures by passive declares: the broker here has no
management plugin; the management API path is tested against a fake in
``tests/unit/test_samplers.py``), ``smevbus serve --workers 2`` (every worker's
figures merged), and the whole chain's adapters with their own ``/metrics``. Every
wait polls a condition with a bound that only limits a failure.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

import httpx
import pytest

from gateway.client.http import SoapHttp
from gateway.client.participant import ParticipantClient
from gateway.core.clock import SystemClock
from gateway.crypto.keystore import load_signer, load_verifier
from gateway.testing.chain import Chain, running_chain
from gateway.testing.processes import GatewayProcess, fresh_database, isolated_vhost
from gateway.testing.scrape import Samples, samples
from gateway.xml.parse import parse_secure
from tests.integration import store_fixtures
from tests.integration.test_gateway_cluster import _env as cluster_env
from tests.integration.test_gateway_cluster import keys

postgres_url = store_fixtures.postgres_url
__all__ = ["keys"]  # the cluster tests' dev PKI, re-used

ROOT = Path(__file__).resolve().parents[2]
CONTENT = ROOT / "tests" / "data" / "content"
BIRTH = "urn://smevbus/types/zags/birth-record/1.0"
OPERATOR = "ops-integration-token"
AUTH = {"Authorization": f"Bearer {OPERATOR}"}
#: Bounds a wait for a figure that should show within a few sampler rounds.
WITHIN_S = 60.0

pytestmark = pytest.mark.integration


def _env(keys: Path, vhost_url: str, db_url: str) -> dict[str, str]:
    """The cluster tests' gateway, with an operator token and samplers every 0.2 s."""
    return {
        **cluster_env(keys, vhost_url, db_url),
        "SMEVBUS_OPS_TOKENS": json.dumps({OPERATOR: "ivanov"}),
        "SMEVBUS_METRICS_INTERVAL_S": "0.2",
        "SMEVBUS_AVAILABILITY_INTERVAL_S": "0.2",
    }


@contextmanager
def serving(amqp_url: str, keys: Path, logs: Path, **env: str) -> Iterator[GatewayProcess]:
    """``smevbus serve`` on a vhost and a database of its own, with ``env`` added."""
    with isolated_vhost(amqp_url) as vhost_url, fresh_database() as db_url:
        process = GatewayProcess(env={**_env(keys, vhost_url, db_url), **env}, log_path=logs)
        process.start()
        try:
            yield process
        finally:
            process.stop()


def client(keys: Path, who: str, call: SoapHttp) -> ParticipantClient:
    clock = SystemClock()
    return ParticipantClient(
        signer=load_signer(keys, who), verifier=load_verifier(keys, clock), clock=clock, call=call
    )


async def scrape(base_url: str) -> Samples:
    async with httpx.AsyncClient(base_url=base_url, timeout=30) as http:
        response = await http.get("/metrics", headers=AUTH)
    assert response.status_code == 200, response.text
    return samples(response.text)


async def eventually(base_url: str, holds: Callable[[Samples], bool], what: str) -> Samples:
    """The first scrape of ``base_url`` where ``holds``; fails after :data:`WITHIN_S`."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + WITHIN_S
    while True:
        page = await scrape(base_url)
        if holds(page):
            return page
        assert loop.time() < deadline, f"never saw {what}"
        await asyncio.sleep(0.1)  # between two scrapes; the condition is what ends it


@pytest.fixture(scope="module")
def gateway(
    keys: Path, amqp_url: str, postgres_url: str, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[GatewayProcess]:
    with serving(amqp_url, keys, tmp_path_factory.mktemp("logs") / "gateway.log") as process:
        yield process


async def test_metrics_want_an_operator_token_and_ready_names_every_check(
    gateway: GatewayProcess,
) -> None:
    async with httpx.AsyncClient(base_url=gateway.base_url, timeout=30) as http:
        refused = await http.get("/metrics")
        wrong = await http.get("/metrics", headers={"Authorization": "Bearer nope"})
        ready = await http.get("/ready")
    assert (refused.status_code, wrong.status_code) == (401, 401)
    assert ready.status_code == 200
    assert ready.json() == {
        "status": "ok",
        "checks": {"journal": "ok", "transport": "ok", "keys": "ok", "registry": "ok"},
    }


async def test_queue_figures_and_counters_follow_real_round_trips(
    keys: Path, gateway: GatewayProcess
) -> None:
    queue = {"queue": "requests.ZAGS"}
    request = {"message_type": BIRTH, "sender": "PORTAL", "recipient": "ZAGS"}
    response = {"message_type": BIRTH, "sender": "ZAGS", "recipient": "PORTAL"}
    before = await scrape(gateway.base_url)
    asked = parse_secure((CONTENT / "zags-birth-record.request.xml").read_bytes())
    answer = parse_secure((CONTENT / "zags-birth-record.response.xml").read_bytes())
    async with SoapHttp(gateway.base_url + "/ws", timeout=30) as call:
        portal, zags = client(keys, "PORTAL", call), client(keys, "ZAGS", call)
        for _ in range(2):
            await portal.send_request(asked)

        waiting = await eventually(
            gateway.base_url,
            lambda p: (
                p.value("smevbus_queue_messages", **queue, state="ready") == 2
                and p.value("smevbus_queue_oldest_message_age_seconds", **queue) > 0
            ),
            "two requests waiting in requests.ZAGS",
        )
        assert waiting.value("smevbus_queue_consumers", **queue) == 0
        # Passive declares do not tell unacked (the management API would).
        assert not waiting.has("smevbus_queue_messages", **queue, state="unacked")

        for _ in range(2):
            delivery = await zags.get_request()
            assert delivery is not None
            await zags.send_response(delivery.reply_to, content=answer)
            await zags.ack(delivery.metadata.message_id)

    after = await eventually(
        gateway.base_url,
        lambda p: (
            p.value("smevbus_queue_messages", **queue, state="ready") == 0
            and p.value("smevbus_queue_oldest_message_age_seconds", **queue) == 0
            and p.value("smevbus_agency_availability_ratio", agency="ZAGS") == 1.0
        ),
        "requests.ZAGS empty and ZAGS available",
    )

    def moved(name: str, **labels: str) -> float:
        return after.value(name, **labels) - before.value(name, **labels)

    assert moved("smevbus_messages_total", **request, outcome="accepted") == 2
    assert moved("smevbus_messages_total", **response, outcome="accepted") == 2
    count = "smevbus_stage_duration_seconds_count"
    for stage, times in (("schema", 4), ("publish", 4), ("deliver", 2), ("end_to_end", 2)):
        assert moved(count, stage=stage) == times, stage
    assert moved("smevbus_stage_duration_seconds_sum", stage="publish") > 0
    assert after.value("smevbus_certificate_expiry_timestamp_seconds", participant="ZAGS") > 0
    assert after.value("smevbus_dead_letters", participant="ZAGS", reason="rejected") == 0
    assert after.types["process_cpu_seconds"] == "counter"  # one process: its own metrics


@pytest.fixture(scope="module")
def workers(
    keys: Path, amqp_url: str, postgres_url: str, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[GatewayProcess]:
    metrics_dir = tmp_path_factory.mktemp("metrics")
    # Left over from an earlier run: serve must empty the directory, or these counts
    # would be summed into the new ones (or break the merge).
    (metrics_dir / "counter_999999.db").write_bytes(b"stale")
    with serving(
        amqp_url,
        keys,
        tmp_path_factory.mktemp("logs") / "workers.log",
        SMEVBUS_HTTP_WORKERS="2",
        SMEVBUS_METRICS_DIR=str(metrics_dir),
    ) as process:
        yield process


async def test_two_workers_expose_their_counts_merged(keys: Path, workers: GatewayProcess) -> None:
    sends = 8
    asked = parse_secure((CONTENT / "zags-birth-record.request.xml").read_bytes())
    # A connection per call: the kernel spreads the calls over both workers.
    async with SoapHttp(workers.base_url + "/ws", timeout=30, keep_alive=False) as call:
        portal = client(keys, "PORTAL", call)
        for _ in range(sends):
            await portal.send_request(asked)

    accepted = {"message_type": BIRTH, "sender": "PORTAL", "recipient": "ZAGS"}
    pages = []
    for _ in range(6):  # new connections: answered by either worker, each merging all
        async with httpx.AsyncClient(base_url=workers.base_url, timeout=30) as http:
            response = await http.get("/metrics", headers=AUTH)
        assert response.status_code == 200
        pages.append(samples(response.text))
    for page in pages:
        assert page.value("smevbus_messages_total", **accepted, outcome="accepted") == sends
        assert page.value("smevbus_stage_duration_seconds_count", stage="publish") == sends
        assert "process_cpu_seconds" not in page.types  # one worker's would mislead
    await eventually(
        workers.base_url,
        lambda p: p.value("smevbus_queue_messages", queue="requests.ZAGS", state="ready") == sends,
        f"{sends} requests waiting, sampled by a worker",
    )


@pytest.fixture
def chain(amqp_url: str, postgres_url: str, tmp_path: Path) -> Iterator[Chain]:
    """Gateway, mock agencies and adapters as processes (ZAGS pulls, MVD and FNS push)."""
    shared = {"SMEVBUS_OPS_TOKENS": json.dumps({OPERATOR: "ivanov"})}
    with running_chain(amqp_url, tmp_path / "keys", tmp_path, shared_env=shared) as running:
        yield running


async def test_every_adapter_serves_health_ready_and_its_own_metrics(chain: Chain) -> None:
    bases = {name: f"http://127.0.0.1:{port}" for name, port in chain.ops_ports.items()}
    async with httpx.AsyncClient(timeout=30) as http:
        for name, base in bases.items():
            assert (await http.get(base + "/health")).status_code == 200, name
            ready = await http.get(base + "/ready")
            assert ready.status_code == 200, (name, ready.text)
            checks = ready.json()["checks"]
            expected = {"keys", "registry", "gateway"} | ({"broker"} if name != "zags" else set())
            assert set(checks) == expected, name
            assert (await http.get(base + "/metrics")).status_code == 401, name
    inn = parse_secure((CONTENT / "fns-inn.request.xml").read_bytes())
    async with SoapHttp(chain.gateway.base_url + "/ws", timeout=30) as call:
        portal = client(chain.keys, "PORTAL", call)
        sent = await portal.send_request(inn)
        loop = asyncio.get_running_loop()
        deadline = loop.time() + WITHIN_S
        while (got := await portal.get_response()) is None:
            assert loop.time() < deadline, "FNS never answered"
            await asyncio.sleep(0.1)
        assert got.original_message_id == sent.message_id
        await portal.ack(got.metadata.message_id)
    fns = await scrape(bases["fns"])
    # The mock knows no such taxpayer: a refusal (NO_DATA), the agency answered.
    assert fns.value("smevbus_agency_requests_total", agency="FNS", outcome="rejected") == 1
    assert fns.total("smevbus_agency_requests_total") == 1
    assert fns.value("smevbus_agency_answer_seconds_count", agency="FNS", outcome="rejected") == 1
    assert fns.value("smevbus_stage_duration_seconds_count", stage="agency_call") == 1
    zags = await scrape(bases["zags"])
    assert zags.total("smevbus_agency_requests_total") == 0
