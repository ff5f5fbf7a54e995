"""The whole chain as separate processes, as docker-compose runs it.

``smevbus serve`` (RabbitMQ + PostgreSQL) + the mock agencies + ``smevbus adapter zags
--pull`` (SOAP polling of /ws) and ``smevbus adapter mvd_migration`` (push, the default:
consuming requests.MVD_MIGR from the gateway's RabbitMQ vhost): the portal's
SendRequests are answered with the mock registries' data, signed by the agency, verified
by the bus and by the portal; the journal tells how each request was delivered.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from lxml import etree

from gateway.client.http import SoapHttp
from gateway.client.participant import ParticipantClient
from gateway.core.clock import SystemClock
from gateway.crypto.keystore import load_signer, load_verifier
from gateway.testing.chain import Chain
from gateway.testing.journal import journal_report_at
from gateway.xml.parse import parse_secure
from gateway.xml.readers import read_response_data
from tests.integration import store_fixtures
from tests.integration.chain_fixtures import chain_of

postgres_url = store_fixtures.postgres_url
pytestmark = pytest.mark.integration

ROOT = Path(__file__).resolve().parents[2]
CONTENT = ROOT / "tests" / "data" / "content"
PARTICIPANTS = {"PORTAL": "portal", "ZAGS": "zags", "MVD_MIGR": "mvd", "FNS": "fns"}


@pytest.fixture(scope="module")
def chain(
    amqp_url: str, postgres_url: str, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Chain]:
    with chain_of(amqp_url, tmp_path_factory) as running:
        yield running


@dataclass
class Answered:
    signer: str
    content: etree._Element
    #: The request's journal: (state, reason) per transition.
    history: list[tuple[str, str | None]]


async def ask(chain: Chain, content_file: str) -> Answered:
    """PORTAL sends one request and pulls until its answer arrives (bounded)."""
    clock = SystemClock()
    async with SoapHttp(f"{chain.gateway.base_url}/ws", timeout=30) as call:
        portal = ParticipantClient(
            signer=load_signer(chain.keys, "PORTAL"),
            verifier=load_verifier(chain.keys, clock),
            clock=clock,
            call=call,
        )
        sent = await portal.send_request(parse_secure((CONTENT / content_file).read_bytes()))
        loop = asyncio.get_running_loop()
        deadline = loop.time() + 60
        while loop.time() < deadline:
            delivery = await portal.get_response()
            if delivery is None:
                await asyncio.sleep(0.2)  # the adapter works on it: poll, bounded
                continue
            await portal.ack(delivery.metadata.message_id)
            assert delivery.original_message_id == sent.message_id
            answer = read_response_data(delivery.response_data)
            assert answer.content is not None, f"rejected: {answer.rejections}"
            report = await journal_report_at(chain.database_url, sent.message_id)
            return Answered(
                delivery.metadata.sender.mnemonic,
                answer.content,
                [(t.state, t.reason) for t in report.history],
            )
    raise AssertionError(f"no answer to {content_file} within 60 s")


async def test_zags_answers_a_birth_record_from_its_registry(chain: Chain) -> None:
    answered = await ask(chain, "zags-birth-record.request.xml")
    signer, content = answered.signer, answered.content
    assert signer == "ZAGS"
    assert ("DELIVERED", "attempt 1") in answered.history  # pulled by GetRequest
    assert content.findtext(".//{*}ActRecord/{*}Number") == "120197100000101234005"
    assert content.findtext(".//{*}RegistryOffice/{*}Code") == "R7100033"
    assert content.findtext(".//{*}Mother/{*}FirstName") == "Елена"


async def test_mvd_answers_passport_validity(chain: Chain) -> None:
    answered = await ask(chain, "mvd-passport-validity.request.xml")
    signer, content = answered.signer, answered.content
    assert signer == "MVD_MIGR"
    states = [state for state, _ in answered.history]
    assert states == ["ACCEPTED", "QUEUED", "DELIVERED", "RESPONDED", "RESPONSE_DELIVERED"]
    assert ("DELIVERED", "delivered by push") in answered.history  # consumed from RabbitMQ
    assert etree.QName(content).localname == "PassportValidityResponse"
    assert content.findtext(".//{*}Status") == "VALID"
