"""Several gateway processes on one broker and one journal.

Two ``smevbus serve`` processes: a participant may pull from one and Ack at the other;
the Ack is journaled where it lands, and the copy the first process still holds comes
back after its visibility timeout and is dropped as redundant, never handed out again.
One ``smevbus serve --workers 2``: calls spread over both workers, each message is
delivered exactly once.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import unquote, urlsplit

import psutil
import pytest

from gateway.client.http import SoapHttp
from gateway.client.participant import ParticipantClient
from gateway.core.clock import SystemClock
from gateway.crypto.devpki import init_dev_pki
from gateway.crypto.envelope import sign_element
from gateway.crypto.keystore import load_signer, load_verifier
from gateway.testing.journal import journal_report_at
from gateway.testing.processes import GatewayProcess, fresh_database, isolated_vhost
from gateway.xml import messages as m
from gateway.xml.parse import parse_secure
from gateway.xml.soap import parse_fault, wrap_envelope
from tests.integration import store_fixtures
from tests.integration.load import queue_depths

postgres_url = store_fixtures.postgres_url

ROOT = Path(__file__).resolve().parents[2]
CONTENT = ROOT / "tests" / "data" / "content"
VISIBILITY_S = 2

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def keys(tmp_path_factory: pytest.TempPathFactory) -> Path:
    keys_dir = tmp_path_factory.mktemp("keys")
    names = {"PORTAL": "portal", "ZAGS": "zags", "MVD_MIGR": "mvd", "FNS": "fns"}
    init_dev_pki(keys_dir, {**names, "SMEVBUS": "bus"}, clock=SystemClock())
    return keys_dir


def _env(keys: Path, vhost_url: str, db_url: str) -> dict[str, str]:
    """A gateway on the shared broker vhost and journal, with a short visibility timeout."""
    return {
        "SMEVBUS_TRANSPORT": "amqp",
        "SMEVBUS_AMQP_URL": vhost_url,
        "SMEVBUS_DATABASE_URL": db_url,
        "SMEVBUS_KEYS_DIR": str(keys),
        "SMEVBUS_VISIBILITY_TIMEOUT_S": str(VISIBILITY_S),
    }


@pytest.fixture(scope="module")
def cluster(
    keys: Path, amqp_url: str, postgres_url: str, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[tuple[str, GatewayProcess, GatewayProcess]]:
    with isolated_vhost(amqp_url) as vhost_url, fresh_database() as db_url:
        env = _env(keys, vhost_url, db_url)
        logs = tmp_path_factory.mktemp("logs")
        a = GatewayProcess(env=env, log_path=logs / "a.log")
        b = GatewayProcess(env=env, log_path=logs / "b.log")
        a.start()
        try:
            b.start()
            try:
                yield unquote(urlsplit(vhost_url).path.lstrip("/")), a, b
            finally:
                b.stop()
        finally:
            a.stop()


async def test_ack_at_another_process_counts_and_the_held_copy_is_dropped(
    keys: Path, cluster: tuple[str, GatewayProcess, GatewayProcess]
) -> None:
    vhost, a, b = cluster
    clock = SystemClock()
    verifier = load_verifier(keys, clock)
    async with (
        SoapHttp(a.base_url + "/ws", timeout=30) as to_a,
        SoapHttp(b.base_url + "/ws", timeout=30) as to_b,
    ):

        def client(who: str, call: SoapHttp) -> ParticipantClient:
            return ParticipantClient(
                signer=load_signer(keys, who), verifier=verifier, clock=clock, call=call
            )

        portal = client("PORTAL", to_a)
        zags_a, zags_b = client("ZAGS", to_a), client("ZAGS", to_b)
        content = parse_secure((CONTENT / "zags-birth-record.request.xml").read_bytes())
        sent = await portal.send_request(content)
        delivery = await zags_a.get_request()
        assert delivery is not None
        assert delivery.metadata.message_id == sent.message_id

        await zags_b.ack(sent.message_id)  # the balancer sent the Ack elsewhere
        report = await journal_report_at(a.env["SMEVBUS_DATABASE_URL"], sent.message_id)
        assert [t.state for t in report.history] == ["ACCEPTED", "QUEUED", "DELIVERED", "ACKED"]

        # Process A gives its copy back after the visibility timeout; polls at either
        # process drop it instead of handing it out again, and the queue empties.
        loop = asyncio.get_running_loop()
        deadline = loop.time() + VISIBILITY_S + 60
        while (await queue_depths(vhost)).get("smevbus.requests.ZAGS", 0) > 0:
            assert loop.time() < deadline, "the acked message never left the queue"
            for zags in (zags_a, zags_b):
                assert await zags.get_request() is None
        assert await zags_b.get_request() is None
        final = await journal_report_at(a.env["SMEVBUS_DATABASE_URL"], sent.message_id)
        assert [t.state for t in final.history] == ["ACCEPTED", "QUEUED", "DELIVERED", "ACKED"]


async def test_a_get_request_replayed_at_another_process_is_refused(
    keys: Path, cluster: tuple[str, GatewayProcess, GatewayProcess]
) -> None:
    _, a, b = cluster
    clock = SystemClock()
    verifier = load_verifier(keys, clock)
    async with (
        SoapHttp(a.base_url + "/ws", timeout=30) as to_a,
        SoapHttp(b.base_url + "/ws", timeout=30) as to_b,
    ):
        portal = ParticipantClient(
            signer=load_signer(keys, "PORTAL"), verifier=verifier, clock=clock, call=to_a
        )
        zags = ParticipantClient(
            signer=load_signer(keys, "ZAGS"), verifier=verifier, clock=clock, call=to_a
        )
        content = parse_secure((CONTENT / "zags-birth-record.request.xml").read_bytes())
        first = await portal.send_request(content)
        second = await portal.send_request(content)

        # A GetRequest captured on its way to A, posted again to B.
        body = m.build_get_request(m.TypeSelector(timestamp=clock.now()))
        captured = wrap_envelope(sign_element(body, load_signer(keys, "ZAGS")))
        status, reply = await to_a(captured)
        assert status == 200
        assert str(first.message_id).encode() in reply
        status, reply = await to_b(captured)
        fault = parse_fault(parse_secure(reply))
        assert (status, fault and fault.code) == (500, "replayed_request")

        report = await journal_report_at(a.env["SMEVBUS_DATABASE_URL"], second.message_id)
        assert report.status in ("ACCEPTED", "QUEUED")  # not handed out (QUEUED mark pending?)
        await zags.ack(first.message_id)
        delivery = await zags.get_request()
        assert delivery is not None
        assert delivery.metadata.message_id == second.message_id
        await zags.ack(second.message_id)


@pytest.fixture(scope="module")
def workers(
    keys: Path, amqp_url: str, postgres_url: str, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[tuple[str, GatewayProcess]]:
    with isolated_vhost(amqp_url) as vhost_url, fresh_database() as db_url:
        gateway = GatewayProcess(
            env={**_env(keys, vhost_url, db_url), "SMEVBUS_HTTP_WORKERS": "2"},
            log_path=tmp_path_factory.mktemp("logs") / "workers.log",
        )
        gateway.start()
        try:
            yield unquote(urlsplit(vhost_url).path.lstrip("/")), gateway
        finally:
            gateway.stop()


async def test_serve_with_two_worker_processes_delivers_each_message_once(
    keys: Path, workers: tuple[str, GatewayProcess]
) -> None:
    _, gateway = workers
    assert gateway.process is not None
    workers = psutil.Process(gateway.process.pid).children()
    assert len(workers) >= 2, "two worker processes"
    clock = SystemClock()
    verifier = load_verifier(keys, clock)
    # A new connection per call: the kernel spreads them over both workers, so pulls
    # and Acks land on either.
    async with SoapHttp(gateway.base_url + "/ws", timeout=30, keep_alive=False) as call:

        def client(who: str) -> ParticipantClient:
            return ParticipantClient(
                signer=load_signer(keys, who), verifier=verifier, clock=clock, call=call
            )

        portal, zags = client("PORTAL"), client("ZAGS")
        content = parse_secure((CONTENT / "zags-birth-record.request.xml").read_bytes())
        answer = parse_secure((CONTENT / "zags-birth-record.response.xml").read_bytes())
        sent = {(await portal.send_request(content)).message_id for _ in range(10)}
        delivered: list[object] = []
        loop = asyncio.get_running_loop()
        deadline = loop.time() + VISIBILITY_S + 60
        while len(delivered) < len(sent):
            assert loop.time() < deadline, f"only {len(delivered)} of {len(sent)} delivered"
            delivery = await zags.get_request()
            if delivery is not None:
                delivered.append(delivery.metadata.message_id)
                await zags.send_response(delivery.reply_to, content=answer)
                await zags.ack(delivery.metadata.message_id)
        assert sorted(map(str, delivered)) == sorted(map(str, sent)), "each exactly once"
        assert await zags.get_request() is None
        for message_id in sent:
            report = await journal_report_at(gateway.env["SMEVBUS_DATABASE_URL"], message_id)
            assert report.status in ("RESPONDED", "RESPONSE_DELIVERED"), report
