"""What the broker refuses to take: a real ``smevbus serve`` on RabbitMQ and PostgreSQL.

* An end of life years ahead is more than RabbitMQ takes as a per-message TTL
  (``PRECONDITION_FAILED ... value_too_large``): the request must still be accepted
  and queued, keeping its exact end of life.
* A full queue refuses publishes (a ``max-length`` policy, a quota: the queues
  overflow with ``reject-publish``), then takes them again once its provider drained
  it: the client got ``internal``, resends the same signed bytes, and the message,
  left ACCEPTED by the refused publish, is queued and delivered exactly once.
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from urllib.parse import quote, unquote, urlsplit

import aio_pika
import pytest

from gateway.client.http import SoapHttp
from gateway.client.participant import ParticipantClient
from gateway.core.clock import MessageIdSource, SystemClock
from gateway.crypto.devpki import init_dev_pki
from gateway.crypto.envelope import sign_element
from gateway.crypto.keystore import load_signer, load_verifier
from gateway.testing.journal import journal_report_at
from gateway.testing.processes import (
    GatewayProcess,
    fresh_database,
    isolated_vhost,
    rabbitmqctl,
)
from gateway.xml import messages as m
from gateway.xml.parse import parse_secure
from gateway.xml.readers import read_request_data
from gateway.xml.soap import parse_fault, wrap_envelope
from tests.integration import store_fixtures
from tests.integration.load import queue_depths

postgres_url = store_fixtures.postgres_url

ROOT = Path(__file__).resolve().parents[2]
BIRTH_REQUEST = ROOT / "tests" / "data" / "content" / "zags-birth-record.request.xml"
PARTICIPANTS = {"PORTAL": "portal", "ZAGS": "zags", "MVD_MIGR": "mvd", "FNS": "fns"}
ZAGS_QUEUE = "smevbus.requests.ZAGS"
WAIT = 30.0  # bounds a wait for the broker; never a measurement

pytestmark = pytest.mark.integration


@dataclass(frozen=True)
class Gateway:
    process: GatewayProcess
    vhost: str
    keys: Path

    def client(self, who: str, call: SoapHttp) -> ParticipantClient:
        clock = SystemClock()
        return ParticipantClient(
            signer=load_signer(self.keys, who),
            verifier=load_verifier(self.keys, clock),
            clock=clock,
            call=call,
        )


@pytest.fixture(scope="module")
def gateway(
    amqp_url: str, postgres_url: str, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Gateway]:
    keys = tmp_path_factory.mktemp("keys")
    init_dev_pki(keys, {**PARTICIPANTS, "SMEVBUS": "bus"}, clock=SystemClock())
    with isolated_vhost(amqp_url) as vhost_url, fresh_database() as db_url:
        process = GatewayProcess(
            env={
                "SMEVBUS_TRANSPORT": "amqp",
                "SMEVBUS_AMQP_URL": vhost_url,
                "SMEVBUS_DATABASE_URL": db_url,
                "SMEVBUS_KEYS_DIR": str(keys),
            },
            log_path=tmp_path_factory.mktemp("logs") / "gateway.log",
        )
        process.start()
        try:
            yield Gateway(process, unquote(urlsplit(vhost_url).path.lstrip("/")), keys)
        finally:
            process.stop()


def signed_send_request(gateway: Gateway, *, eol: datetime | None = None) -> tuple[str, bytes]:
    """A MessageID and its signed SendRequest envelope, to be sent (and resent) as is."""
    message_id = MessageIdSource(SystemClock()).new()
    content = parse_secure(BIRTH_REQUEST.read_bytes())
    body = m.build_send_request(message_id, content, eol=eol)
    sign_element(body, load_signer(gateway.keys, "PORTAL"))
    return str(message_id), wrap_envelope(body)


async def post(gateway: Gateway, soap: bytes) -> tuple[int, str | None]:
    """POST to /ws: the HTTP status and the fault code (None for a reply)."""
    async with SoapHttp(gateway.process.base_url + "/ws", timeout=60) as call:
        status, reply = await call(soap)
    fault = parse_fault(parse_secure(reply))
    return status, None if fault is None else fault.code


async def test_end_of_life_far_ahead_is_queued_with_its_exact_end_of_life(
    gateway: Gateway,
) -> None:
    eol = datetime(2099, 1, 1, tzinfo=UTC)
    message_id, soap = signed_send_request(gateway, eol=eol)
    assert await post(gateway, soap) == (200, None)
    async with SoapHttp(gateway.process.base_url + "/ws", timeout=60) as call:
        zags = gateway.client("ZAGS", call)
        delivery = await zags.get_request()
        assert delivery is not None
        assert str(delivery.metadata.message_id) == message_id
        assert read_request_data(delivery.request_data).eol == eol
        await zags.ack(delivery.metadata.message_id)


async def fill_until_refused(amqp_url: str, vhost: str) -> int:
    """Publish probes to the ZAGS queue until it refuses one; how many it took.

    The policy reaches the queue a moment after ``set_policy`` returns, and a quorum
    queue takes one message past its limit before it refuses.
    """
    connection = await aio_pika.connect(amqp_url.rstrip("/") + "/" + quote(vhost, safe=""))
    async with connection:
        channel = await connection.channel(publisher_confirms=True)
        loop = asyncio.get_running_loop()
        deadline = loop.time() + WAIT
        took = 0
        while True:
            try:
                await channel.default_exchange.publish(aio_pika.Message(b"probe"), ZAGS_QUEUE)
            except aio_pika.exceptions.DeliveryError:
                return took
            took += 1
            assert loop.time() < deadline, "the queue never refused a publish"


async def drain(amqp_url: str, vhost: str, count: int) -> None:
    """Take ``count`` probes off the ZAGS queue as a consumer would (get and ack)."""
    connection = await aio_pika.connect(amqp_url.rstrip("/") + "/" + quote(vhost, safe=""))
    async with connection:
        queue = await (await connection.channel()).get_queue(ZAGS_QUEUE)
        for _ in range(count):
            probe = await queue.get(timeout=WAIT)
            assert probe is not None
            assert probe.body == b"probe"
            await probe.ack()


async def queue_empties(vhost: str) -> None:
    """Wait until the broker counts no message in the ZAGS queue (its counts lag a few
    seconds behind)."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + WAIT
    while (await queue_depths(vhost)).get(ZAGS_QUEUE) != 0:
        assert loop.time() < deadline, "a copy stayed in the queue"
        await asyncio.sleep(0.2)


async def test_a_publish_refused_by_a_full_queue_goes_through_on_the_resend_once_drained(
    amqp_url: str, gateway: Gateway
) -> None:
    message_id, soap = signed_send_request(gateway)
    policy = f"quota-{uuid.uuid4().hex[:8]}"
    definition = '{"max-length": 1}'  # the queues overflow with reject-publish
    await rabbitmqctl(
        "set_policy",
        "-p",
        gateway.vhost,
        "--apply-to",
        "queues",
        policy,
        f"^{ZAGS_QUEUE}$",
        definition,
    )
    try:
        probes = await fill_until_refused(amqp_url, gateway.vhost)
        assert await post(gateway, soap) == (500, "internal")
        async with SoapHttp(gateway.process.base_url + "/ws", timeout=60) as call:
            zags = gateway.client("ZAGS", call)
            report = await journal_report_at(
                gateway.process.env["SMEVBUS_DATABASE_URL"], message_id
            )
            assert [t.state for t in report.history] == ["ACCEPTED"]

            await drain(amqp_url, gateway.vhost, probes)  # the provider catches up
            assert await post(gateway, soap) == (200, None)
            delivery = await zags.get_request()
            assert delivery is not None
            assert str(delivery.metadata.message_id) == message_id
            report = await journal_report_at(
                gateway.process.env["SMEVBUS_DATABASE_URL"], message_id
            )
            assert [t.state for t in report.history] == ["ACCEPTED", "QUEUED", "DELIVERED"]
            await zags.ack(delivery.metadata.message_id)
            assert await zags.get_request() is None
    finally:
        await rabbitmqctl("clear_policy", "-p", gateway.vhost, policy)
    await queue_empties(gateway.vhost)
