"""Load helpers for fault tests: portal clients that retry, a provider that drains.

A portal client here behaves as a real integrator's would: it signs a SendRequest
once and, after a transport error or a retryable fault (``internal``: the bus says
"retry later"), sends *the same bytes* again, so the bus sees the same MessageID
and content. A reply counts as success only after the bus's signature on it
verifies.
"""

from __future__ import annotations

import asyncio
import uuid
from collections import Counter
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field

from lxml import etree

from gateway.client.http import GatewayUnreachable, SoapHttp
from gateway.client.participant import ParticipantClient
from gateway.core.clock import Clock
from gateway.core.envelope import MessageMetadata
from gateway.core.errors import InternalError, NotFound, SmevbusError
from gateway.crypto.certificates import common_name
from gateway.crypto.envelope import sign_element, verify_element
from gateway.crypto.xmldsig import XmlSigner, XmlVerifier
from gateway.testing.processes import rabbitmqctl
from gateway.xml import messages as m
from gateway.xml import readers
from gateway.xml.parse import parse_secure
from gateway.xml.soap import parse_fault, unwrap_envelope, wrap_envelope

#: Fault codes after which a client sends the same bytes again.
RETRYABLE_CODES = frozenset({"internal"})


@dataclass(frozen=True)
class SignedRequest:
    message_id: str
    soap: bytes


def signed_send_requests(
    signer: XmlSigner, ids: Sequence[uuid.UUID], content: etree._Element
) -> list[SignedRequest]:
    """One signed SendRequest envelope per MessageID, built once and resent unchanged."""
    out = []
    for message_id in ids:
        body = m.build_send_request(message_id, content)
        sign_element(body, signer)
        out.append(SignedRequest(str(message_id), wrap_envelope(body)))
    return out


class Retryable(Exception):
    """The bus answered with a fault a client retries (``internal``)."""


def read_send_reply(raw: bytes, verifier: XmlVerifier, bus: str = "SMEVBUS") -> MessageMetadata:
    """The metadata of a SendRequest reply whose bus signature verifies; raise on a fault."""
    root = parse_secure(raw, max_bytes=16 * 1024 * 1024)
    fault = parse_fault(root)
    if fault is not None:
        if fault.code in RETRYABLE_CODES:
            raise Retryable(f"{fault.code}: {fault.description or fault.faultstring}")
        raise AssertionError(f"SendRequest refused: {fault.code}: {fault.faultstring}")
    reply = unwrap_envelope(root)[1]
    cert = verify_element(reply, verifier, "SMEVSignature")
    assert common_name(cert) == bus, f"reply not signed by the bus: {common_name(cert)}"
    return readers.read_send_result(reply)


@dataclass
class LoadStats:
    succeeded: dict[str, str] = field(default_factory=dict)  # MessageID -> status in the reply
    transport_errors: int = 0
    retryable_faults: int = 0
    retried_ids: set[str] = field(default_factory=set)


async def submit_all(
    requests: Sequence[SignedRequest],
    post: Callable[[bytes], Awaitable[tuple[int, bytes]]],
    verifier: XmlVerifier,
    *,
    concurrency: int,
    give_up_after: float,
    on_success: Callable[[LoadStats], None] = lambda _: None,
) -> LoadStats:
    """Send every request from ``concurrency`` workers, each retrying its bytes until a reply.

    Retries back off a little (a client's politeness, not synchronization) and stop
    at ``give_up_after`` s from the start; a request that never succeeded is left out
    of ``succeeded``. ``on_success`` runs after each successful reply (the trigger for
    a fault injection).
    """
    loop = asyncio.get_running_loop()
    deadline = loop.time() + give_up_after
    stats = LoadStats()
    todo: asyncio.Queue[SignedRequest] = asyncio.Queue()
    for request in requests:
        todo.put_nowait(request)

    async def send_until_answered(request: SignedRequest) -> None:
        attempt = 0
        while loop.time() < deadline:
            attempt += 1
            try:
                _status, raw = await post(request.soap)
                meta = read_send_reply(raw, verifier)
            except GatewayUnreachable:
                stats.transport_errors += 1
            except Retryable:
                stats.retryable_faults += 1
            else:
                assert str(meta.message_id) == request.message_id
                stats.succeeded[request.message_id] = str(meta.status)
                on_success(stats)
                return
            stats.retried_ids.add(request.message_id)
            await asyncio.sleep(min(0.05 * attempt, 0.5))

    async def worker() -> None:
        while True:
            try:
                request = todo.get_nowait()
            except asyncio.QueueEmpty:
                return
            await send_until_answered(request)

    await asyncio.gather(*(worker() for _ in range(concurrency)))
    return stats


@dataclass
class DrainStats:
    deliveries: Counter[str] = field(default_factory=Counter)  # MessageID -> times handed out
    empty_polls: int = 0
    #: GetRequest answered with a fault the bus says to retry (``internal``).
    get_faults: int = 0
    #: Ack answered with ``internal`` or ``not_found`` (the delivery was lost with its channel).
    ack_faults: int = 0


async def drain(
    provider: ParticipantClient,
    expected: Callable[[], set[str] | None],
    *,
    within: float,
    workers: int = 2,
) -> DrainStats:
    """GetRequest + Ack until every expected MessageID was delivered and the queue is empty.

    ``expected()`` is None while the portal is still sending (keep draining), then the
    MessageIDs that must arrive. Bounded by ``within`` s; returns what was seen either
    way (the caller asserts). A failed Ack is counted, not retried: the message comes
    back and is pulled again.
    """
    loop = asyncio.get_running_loop()
    deadline = loop.time() + within
    stats = DrainStats()

    def done() -> bool:
        wanted = expected()
        return wanted is not None and wanted <= stats.deliveries.keys()

    async def worker() -> None:
        empty_in_a_row = 0
        while loop.time() < deadline:
            try:
                delivery = await provider.get_request()
            except GatewayUnreachable:
                delivery = None
            except SmevbusError as exc:
                if exc.code not in RETRYABLE_CODES:
                    raise
                stats.get_faults += 1
                delivery = None
            if delivery is None:
                stats.empty_polls += 1
                empty_in_a_row += 1
                if done():
                    return
                # Still missing some: poll again, backing off, until the deadline.
                await asyncio.sleep(min(0.05 * empty_in_a_row, 0.5))
                continue
            empty_in_a_row = 0
            message_id = str(delivery.request_data.findtext("{*}MessageID"))
            stats.deliveries[message_id] += 1
            try:
                await provider.ack(uuid.UUID(message_id))
            except (GatewayUnreachable, InternalError, NotFound):
                stats.ack_faults += 1

    await asyncio.gather(*(worker() for _ in range(workers)))
    return stats


def participant_over_http(
    call: SoapHttp, *, signer: XmlSigner, verifier: XmlVerifier, clock: Clock
) -> ParticipantClient:
    """A participant's client (here: the provider's) talking SOAP over HTTP."""
    return ParticipantClient(signer=signer, verifier=verifier, clock=clock, call=call)


async def close_vhost_connections(vhost: str) -> int:
    """Have the broker force-close every client connection on ``vhost``; how many it closed.

    Only the test's own isolated vhost is named, so other users of a shared broker
    are never touched.
    """
    listing = await rabbitmqctl("list_connections", "pid", "vhost", "--no-table-headers")
    pids = [
        pid
        for pid, _, on in (line.partition("\t") for line in listing.splitlines())
        if on.strip() == vhost
    ]
    for pid in pids:
        await rabbitmqctl("close_connection", pid, "smevbus fault test: forced close")
    return len(pids)


async def queue_depths(vhost: str) -> dict[str, int]:
    """Queue name -> messages in it (ready and unacknowledged), on ``vhost``."""
    listing = await rabbitmqctl(
        "list_queues", "-p", vhost, "name", "messages", "--no-table-headers"
    )
    depths: dict[str, int] = {}
    for line in listing.splitlines():
        name, _, count = line.partition("\t")
        if count.strip().isdigit():
            depths[name] = int(count)
    return depths
