"""The bad-input corpus posted raw over HTTP to ``/ws`` of a real ``smevbus serve``.

One gateway process for the module, on RabbitMQ (its own vhost) and PostgreSQL (its
own database), with a PKI made on the system clock. Every case of
:mod:`tests.bad_input.cases`, plus what only HTTP can carry (media types, bodies over
the HTTP limit, chunked), is posted as raw bytes, and the test checks:

* the HTTP status (500 for a SOAP Fault, 415 for a media type that is no SOAP) and the
  stable code (after the faultcode's dot), a ``soap:Client`` named 1.1 fault naming the
  problem;
* the answer carries no stack trace, file path, Python exception name or driver name;
* nothing was journaled (rows in the journal's tables and for the case's MessageID,
  read straight from PostgreSQL, before and after) and nothing published (ready
  messages of every queue, by passive declares, before and after);
* ``/health`` answers while the case is being posted (probed concurrently, again and
  again for the heavy cases) and after it.

A good signed request still goes through after the whole corpus.
"""

from __future__ import annotations

import asyncio
import re
import uuid
from collections import Counter
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass, field

import aio_pika
import asyncpg
import httpx
import pytest
from lxml import etree

from gateway.client.http import SoapHttp
from gateway.client.participant import ParticipantClient
from gateway.config import REPO_ROOT
from gateway.core.clock import SystemClock
from gateway.core.errors import error_class
from gateway.crypto.keystore import load_verifier
from gateway.crypto.xmldsig import XmlVerifier
from gateway.testing.bus import PARTICIPANTS, BusPKI, birth_request, make_pki
from gateway.testing.processes import GatewayProcess, fresh_database, isolated_vhost
from gateway.transport.base import Direction
from gateway.transport.topology import (
    DEAD_LETTER_EVENTS_QUEUE,
    dead_letter_queue_name,
    queue_name,
)
from gateway.xml.namespaces import SOAP_ENV
from gateway.xml.soap import parse_fault
from tests.bad_input.cases import CASES, FAMILIES, Case
from tests.bad_input.world import assert_nothing_leaks, fresh_id, good_request
from tests.integration import store_fixtures

postgres_url = store_fixtures.postgres_url

pytestmark = pytest.mark.integration

MESSAGE_ID = re.compile(rb"MessageID>([0-9a-fA-F-]{36})<")
#: Bounds a failure (a stalled gateway), never a measurement.
HEALTH_TIMEOUT = 20.0
POST_TIMEOUT = 120.0


# --- the gateway and the world around it -------------------------------------------------


@dataclass
class Gateway:
    process: GatewayProcess
    pki: BusPKI
    amqp_url: str
    database_url: str

    @property
    def ws(self) -> str:
        return f"{self.process.base_url}/ws"


@pytest.fixture(scope="module")
def gateway(
    tmp_path_factory: pytest.TempPathFactory, amqp_url: str, postgres_url: str
) -> Iterator[Gateway]:
    keys_dir = tmp_path_factory.mktemp("bad-input-keys")
    pki = make_pki(keys_dir, SystemClock())
    with isolated_vhost(amqp_url) as vhost_url, fresh_database() as db_url:
        process = GatewayProcess(
            env={
                "SMEVBUS_TRANSPORT": "amqp",
                "SMEVBUS_AMQP_URL": vhost_url,
                "SMEVBUS_DATABASE_URL": db_url,
                "SMEVBUS_KEYS_DIR": str(keys_dir),
                "SMEVBUS_LOG_LEVEL": "INFO",
            },
            log_path=tmp_path_factory.mktemp("bad-input-log") / "gateway.log",
        )
        process.start()
        try:
            yield Gateway(process, pki, vhost_url, db_url)
        finally:
            process.stop()


@dataclass
class HttpWorld:
    """A :class:`~tests.bad_input.world.World` over HTTP: clients sign with the PKI the
    gateway trusts and post through ``call``."""

    pki: BusPKI
    call: SoapHttp
    verifier: XmlVerifier
    clock: SystemClock = field(default_factory=SystemClock)
    clients: dict[str, ParticipantClient] = field(default_factory=dict)

    def client(self, mnemonic: str) -> ParticipantClient:
        if mnemonic not in self.clients:
            self.clients[mnemonic] = ParticipantClient(
                signer=self.pki.signer(mnemonic),
                verifier=self.verifier,
                clock=self.clock,
                call=self.call,
            )
        return self.clients[mnemonic]

    @property
    def portal(self) -> ParticipantClient:
        return self.client("PORTAL")

    @property
    def zags(self) -> ParticipantClient:
        return self.client("ZAGS")

    async def handle(self, raw: bytes) -> tuple[int, bytes]:
        return await self.call(raw)


@pytest.fixture
async def world(gateway: Gateway) -> AsyncIterator[HttpWorld]:
    verifier = load_verifier(gateway.pki.keys_dir, SystemClock())
    async with SoapHttp(gateway.ws, timeout=POST_TIMEOUT) as call:
        yield HttpWorld(gateway.pki, call, verifier)


# --- what the bus holds: journal rows and queued messages ---------------------------------


@dataclass(frozen=True)
class Holdings:
    rows: dict[str, int]  # table -> rows
    queued: dict[str, int]  # queue -> ready messages


async def journal_rows(database_url: str, message_ids: list[str]) -> dict[str, int]:
    conn = await asyncpg.connect(database_url)
    try:
        rows = {
            table: int(await conn.fetchval(f"SELECT count(*) FROM {table}"))
            for table in ("messages", "replay_guard")
        }
        # Not the bus's own QUEUED marks of earlier messages: they come a second or two
        # after the publish, whenever (gateway/router/marks.py).
        rows["transitions"] = int(
            await conn.fetchval(
                "SELECT count(*) FROM transitions WHERE NOT "
                "(from_state = 'ACCEPTED' AND to_state = 'QUEUED' AND actor = 'bus')"
            )
        )
        for message_id in message_ids:
            rows[f"messages[{message_id}]"] = int(
                await conn.fetchval(
                    "SELECT count(*) FROM messages WHERE message_id = $1", message_id
                )
            )
    finally:
        await conn.close()
    return rows


QUEUES = [
    name
    for participant in PARTICIPANTS
    for direction in Direction
    for name in (queue_name(direction, participant), dead_letter_queue_name(direction, participant))
] + [DEAD_LETTER_EVENTS_QUEUE]


async def queued_messages(amqp_url: str) -> dict[str, int]:
    """Ready messages per queue, by passive declares (nothing is declared or changed)."""
    connection = await aio_pika.connect(amqp_url)
    try:
        channel = await connection.channel()
        counts = {}
        for name in QUEUES:
            queue = await channel.declare_queue(name, passive=True)
            result = queue.declaration_result
            counts[name] = int(result.message_count or 0)
        return counts
    finally:
        await connection.close()


async def holdings(gateway: Gateway, raw: bytes) -> Holdings:
    ids = sorted({m.decode() for m in MESSAGE_ID.findall(raw[: 1024 * 1024])})
    return Holdings(
        await journal_rows(gateway.database_url, ids), await queued_messages(gateway.amqp_url)
    )


# --- posting with /health watched -------------------------------------------------------


@dataclass
class Answer:
    status: int
    body: bytes
    #: /health statuses probed while the post was in flight (the first one started with it).
    health_during: list[int]


async def post_watched(
    gateway: Gateway,
    raw: bytes | AsyncIterator[bytes],
    headers: dict[str, str],
) -> Answer:
    """POST ``raw`` to /ws while probing /health, one probe after another, until the
    answer is in. Probes time out only after :data:`HEALTH_TIMEOUT` (a stalled loop)."""
    base = gateway.process.base_url
    async with (
        httpx.AsyncClient(base_url=base, timeout=POST_TIMEOUT) as poster,
        httpx.AsyncClient(base_url=base, timeout=HEALTH_TIMEOUT) as prober,
    ):
        post = asyncio.create_task(poster.post("/ws", content=raw, headers=headers))
        statuses: list[int] = []
        while True:
            statuses.append((await prober.get("/health")).status_code)
            if post.done():
                break
        response = await post
    return Answer(response.status_code, response.content, statuses)


def fault_of(body: bytes) -> tuple[str, str, str, str]:
    """(faultcode, stable code, origin, description) of a SOAP 1.1 Fault answer: a named
    1.1 fault, the stable code after the faultcode's dot (``soap:Client.not_found``)."""
    root = etree.fromstring(body, etree.XMLParser(resolve_entities=False, no_network=True))
    fault = parse_fault(root)
    assert fault is not None, body[:300]
    assert fault.element is not None, body[:300]
    cls = error_class(fault.code or "")
    return (
        fault.faultcode,
        fault.code or "",
        "" if cls is None else str(cls.origin),
        fault.description or "",
    )


def assert_no_leak(gateway: Gateway, body: bytes) -> None:
    text = body.decode("utf-8", errors="replace")
    assert_nothing_leaks(text)
    for path in (str(REPO_ROOT), str(gateway.pki.keys_dir)):
        assert path not in text, f"answer names a local path: {text[:600]}"


async def health_after(gateway: Gateway) -> None:
    async with httpx.AsyncClient(timeout=HEALTH_TIMEOUT) as http:
        resp = await http.get(f"{gateway.process.base_url}/health")
    assert (resp.status_code, resp.json()) == (200, {"status": "ok"})


async def check_refused(
    gateway: Gateway,
    raw: bytes | AsyncIterator[bytes],
    *,
    probe_raw: bytes,
    headers: dict[str, str],
    status: int,
    code: str,
    fragment: str,
) -> Answer:
    before = await holdings(gateway, probe_raw)
    answer = await post_watched(gateway, raw, headers)

    assert answer.status == status, answer.body[:600]
    faultcode, got, origin, description = fault_of(answer.body)
    assert got == code, description
    assert (faultcode, origin) == ("soap:Client", "client")
    assert fragment.lower() in description.lower(), description
    assert_no_leak(gateway, answer.body)
    assert await holdings(gateway, probe_raw) == before, "a refused input changed the bus"
    assert answer.health_during, "no /health probe ran"
    assert set(answer.health_during) == {200}, answer.health_during
    await health_after(gateway)
    return answer


SOAP11 = {"Content-Type": "text/xml; charset=utf-8"}


# --- the corpus -------------------------------------------------------------------------


def _ordered(cases: list[Case]) -> list[Case]:
    """Family by family, so /health is seen answering after each one too."""
    return sorted(cases, key=lambda c: FAMILIES.index(c.family))


@pytest.mark.parametrize(
    "bad", _ordered(CASES), ids=[f"{c.family}-{c.id}" for c in _ordered(CASES)]
)
async def test_bad_input_over_http(gateway: Gateway, world: HttpWorld, bad: Case) -> None:
    raw = await bad.build(world)
    answer = await check_refused(
        gateway,
        raw,
        probe_raw=raw,
        headers=SOAP11,
        status=500,
        code=bad.code,
        fragment=bad.fragment,
    )
    if bad.heavy:
        print(f"\n[{bad.id}] {len(raw)} bytes, /health answered {len(answer.health_during)}x")


# --- what only HTTP carries ---------------------------------------------------------------


@dataclass(frozen=True)
class HttpCase:
    id: str
    headers: dict[str, str]
    status: int
    code: str
    fragment: str


MEDIA_TYPES = [
    # A signed, valid request, but not sent as SOAP: it must not be processed at all.
    HttpCase(
        "text_plain", {"Content-Type": "text/plain"}, 415, "unsupported_media_type", "text/plain"
    ),
    HttpCase(
        "json",
        {"Content-Type": "application/json"},
        415,
        "unsupported_media_type",
        "application/json",
    ),
    HttpCase(
        "application_xml",
        {"Content-Type": "application/xml"},
        415,
        "unsupported_media_type",
        "not SOAP",
    ),
    HttpCase(
        "form",
        {"Content-Type": "application/x-www-form-urlencoded"},
        415,
        "unsupported_media_type",
        "not SOAP",
    ),
    HttpCase(
        "multipart",
        {"Content-Type": "multipart/form-data; boundary=x"},
        415,
        "unsupported_media_type",
        "not SOAP",
    ),
    HttpCase("html", {"Content-Type": "text/html"}, 415, "unsupported_media_type", "not SOAP"),
    HttpCase("lookalike", {"Content-Type": "text/xmlx"}, 415, "unsupported_media_type", "not SOAP"),
    HttpCase("missing", {}, 415, "unsupported_media_type", "missing"),
]


@pytest.mark.parametrize("bad", MEDIA_TYPES, ids=[f"soap-media-{c.id}" for c in MEDIA_TYPES])
async def test_not_soap_media_type_is_415(
    gateway: Gateway, world: HttpWorld, bad: HttpCase
) -> None:
    raw = good_request(world)
    await check_refused(
        gateway,
        raw,
        probe_raw=raw,
        headers=bad.headers,
        status=bad.status,
        code=bad.code,
        fragment=bad.fragment,
    )


async def test_soap12_envelope_as_soap12_media_type(gateway: Gateway, world: HttpWorld) -> None:
    """The media type of SOAP 1.2 is taken, the envelope version is not."""
    raw = good_request(world).replace(SOAP_ENV.encode(), b"http://www.w3.org/2003/05/soap-envelope")
    await check_refused(
        gateway,
        raw,
        probe_raw=raw,
        headers={"Content-Type": "application/soap+xml; charset=utf-8"},
        status=500,
        code="invalid_content",
        fragment="SOAP 1.2",
    )


HTTP_LIMIT = 5 * 1024 * 1024 + 64 * 1024


async def test_body_over_the_http_limit_declared(gateway: Gateway, world: HttpWorld) -> None:
    """Content-Length over the limit: refused before the body is read."""
    raw = good_request(world) + b" " * HTTP_LIMIT
    await check_refused(
        gateway,
        raw,
        probe_raw=raw,
        headers=SOAP11,
        status=500,
        code="message_too_large",
        fragment=f"the limit is {HTTP_LIMIT} bytes",
    )


async def test_body_over_the_http_limit_chunked(gateway: Gateway, world: HttpWorld) -> None:
    """No Content-Length, 8 MB in chunks: refused once the limit is passed."""
    raw = good_request(world)

    async def chunks() -> AsyncIterator[bytes]:
        yield raw
        for _ in range(128):
            yield b" " * (64 * 1024)

    await check_refused(
        gateway,
        chunks(),
        probe_raw=raw,
        headers=SOAP11,
        status=500,
        code="message_too_large",
        fragment=f"exceeds {HTTP_LIMIT} bytes",
    )


# --- afterwards ---------------------------------------------------------------------------


def test_corpus_covers_every_family() -> None:
    counts = Counter(c.family for c in CASES)
    print("\n" + " ".join(f"{family}={counts[family]}" for family in FAMILIES))
    assert set(counts) == set(FAMILIES)
    assert len(CASES) + len(MEDIA_TYPES) + 3 >= 150


async def test_a_good_request_goes_through_after_the_suite(
    gateway: Gateway, world: HttpWorld
) -> None:
    message_id = fresh_id(world)
    before = await queued_messages(gateway.amqp_url)
    sent = await world.portal.send_request(birth_request(), message_id=message_id)
    assert (sent.message_id, sent.status) == (message_id, "requestIsAcceptedBySmev")
    rows = await journal_rows(gateway.database_url, [str(message_id)])
    assert rows[f"messages[{message_id}]"] == 1
    after = await queued_messages(gateway.amqp_url)
    zags = queue_name(Direction.REQUESTS, "ZAGS")
    assert after[zags] == before[zags] + 1
    # ... and ZAGS gets exactly that request.
    while True:
        delivery = await world.zags.get_request()
        assert delivery is not None, "the good request never reached ZAGS"
        got = uuid.UUID(str(delivery.request_data.findtext("{*}MessageID")))
        await world.zags.ack(got)
        if got == message_id:
            break
    await health_after(gateway)
