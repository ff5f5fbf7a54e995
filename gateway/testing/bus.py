"""A whole bus in one process for tests and benchmarks: PKI, router, a client each.

The PKI (registry participants, the bus SMEVBUS, and a few bad certificates) is made
once per test session in a temporary directory, with a :class:`FakeClock` at
:data:`START`. Each :func:`open_bus` builds a fresh router on a ``MemoryTransport``
and an in-memory SQLite journal, with its own ``FakeClock`` at ``START``: the router,
the trust store and the clients all read that one clock.

Plain functions (cached) rather than pytest fixtures, so test modules and benchmarks
import them directly.
"""

from __future__ import annotations

import asyncio
import atexit
import functools
import shutil
import tempfile
import uuid
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

from lxml import etree

from gateway.aggregator import Aggregator
from gateway.aggregator.callback_guard import CallbackGuard
from gateway.aggregator.replies import ReplyIntake
from gateway.bus import Bus as RootBus
from gateway.bus import assemble
from gateway.client.participant import ParticipantClient
from gateway.config import REPO_ROOT, Settings
from gateway.core.clock import Clock, FakeClock, MessageIdSource
from gateway.core.registry import Registry, parse_registry
from gateway.crypto import devpki
from gateway.crypto.envelope import sign_element
from gateway.crypto.profiles import SignatureProfile
from gateway.crypto.trust import TrustStore
from gateway.crypto.xmldsig import XmlSigner, XmlVerifier
from gateway.router.context import BusContext
from gateway.router.router import Router
from gateway.store import Journal, open_journal
from gateway.testing.journal import Report, journal_report
from gateway.transport.base import Delivery, Direction
from gateway.transport.memory import MemoryTransport
from gateway.transport.topology import QueuePolicy
from gateway.xml import messages as m
from gateway.xml.namespaces import SOAP_ENV
from gateway.xml.parse import parse_secure
from gateway.xml.schema import type_catalog, validate_bus_element
from gateway.xml.soap import parse_fault, wrap_envelope

START = datetime(2026, 1, 1, 12, 0, tzinfo=UTC)
REGISTRY_FILE = REPO_ROOT / "config" / "registry.toml"
CONTENT_DIR = REPO_ROOT / "tests" / "data" / "content"

BIRTH = "urn://smevbus/types/zags/birth-record/1.0"
PASSPORT = "urn://smevbus/types/mvd/passport-validity/1.0"
INN = "urn://smevbus/types/fns/inn/1.0"

PARTICIPANTS = ("PORTAL", "ZAGS", "MVD_MIGR", "FNS")
BUS = "SMEVBUS"
#: A CN the trusted dev CA certifies but the registry does not know.
STRANGER = "STRANGER"


@functools.cache
def registry() -> Registry:
    return parse_registry(REGISTRY_FILE.read_text(encoding="utf-8"), source=str(REGISTRY_FILE))


@dataclass(frozen=True)
class BusPKI:
    keys_dir: Path
    ca: devpki.Issued
    #: Bad certificates, all for CN=PORTAL unless named otherwise.
    expired: devpki.Issued
    not_yet_valid: devpki.Issued
    untrusted: devpki.Issued
    revoked: devpki.Issued
    stranger: devpki.Issued

    def cert_pem(self, mnemonic: str) -> bytes:
        return devpki.cert_path(self.keys_dir, mnemonic).read_bytes()

    def signer(self, mnemonic: str) -> XmlSigner:
        return _signer(self.keys_dir, mnemonic)

    def verifier(self, clock: FakeClock) -> XmlVerifier:
        return XmlVerifier(TrustStore.from_dir(self.keys_dir, clock))


@functools.cache
def bus_pki() -> BusPKI:
    """The session's keys directory: every registry participant, the bus, bad certs."""
    keys_dir = Path(tempfile.mkdtemp(prefix="smevbus-bus-pki-"))
    atexit.register(shutil.rmtree, keys_dir, ignore_errors=True)
    return make_pki(keys_dir, FakeClock(START))


def make_pki(keys_dir: Path, clock: Clock) -> BusPKI:
    """A dev PKI in ``keys_dir`` for every registry participant and the bus, and the bad
    certificates, valid by ``clock`` (a real gateway process reads the system clock)."""
    reg = registry()
    names = {p.mnemonic: p.name for p in reg.participants}
    names[reg.bus_mnemonic] = "smevbus"
    devpki.init_dev_pki(keys_dir, names, clock=clock)
    ca = devpki.load_ca(keys_dir)
    return BusPKI(
        keys_dir=keys_dir,
        ca=ca,
        expired=devpki.issue_expired(ca, "PORTAL", clock),
        not_yet_valid=devpki.issue_not_yet_valid(ca, "PORTAL", clock),
        untrusted=devpki.issue_untrusted("PORTAL", clock),
        # Written into crl.pem before any trust store is loaded from the directory.
        revoked=devpki.issue_revoked(keys_dir, "PORTAL", clock),
        stranger=devpki.issue(ca, STRANGER, clock),
    )


@functools.cache
def _signer(keys_dir: Path, mnemonic: str) -> XmlSigner:
    return XmlSigner.from_pem(
        devpki.key_path(keys_dir, mnemonic).read_bytes(),
        devpki.cert_path(keys_dir, mnemonic).read_bytes(),
        SignatureProfile.SMEV,
    )


def signer_for(issued: devpki.Issued) -> XmlSigner:
    return XmlSigner.from_pem(issued.key_pem(), issued.cert_pem(), SignatureProfile.SMEV)


# --- content -------------------------------------------------------------------------


def content(name: str) -> etree._Element:
    """A sample business element from ``tests/data/content/<name>.xml`` (fresh tree)."""
    return etree.fromstring((CONTENT_DIR / f"{name}.xml").read_bytes())


def birth_request() -> etree._Element:
    return content("zags-birth-record.request")


def birth_response() -> etree._Element:
    return content("zags-birth-record.response")


def uuid1_at(when: datetime) -> uuid.UUID:
    """A UUID v1 carrying the time ``when``."""
    return MessageIdSource(FakeClock(when)).new()


# --- raw SOAP ----------------------------------------------------------------------


def signed(body: etree._Element, signer: XmlSigner) -> etree._Element:
    """``body`` signed in place by ``signer`` (the caller's signature)."""
    return sign_element(body, signer)


def soap(body: etree._Element) -> bytes:
    return wrap_envelope(body)


@dataclass(frozen=True)
class Reply:
    status: int
    root: etree._Element
    code: str | None
    description: str | None

    @property
    def ok(self) -> bool:
        return self.status == 200 and self.code is None


def check_against_served_schema(raw: bytes) -> None:
    """Every Body the bus emits, a fault's named element included, validates against
    the schemas /ws serves: checked on every exchange of every test using :class:`Bus`."""
    root = parse_secure(raw, max_bytes=64 * 1024 * 1024)
    body = root.find(f"{{{SOAP_ENV}}}Body")
    assert body is not None, raw[:300]
    assert len(body) == 1, raw[:300]
    child = body[0]
    if child.tag == f"{{{SOAP_ENV}}}Fault":
        detail = child.find("detail")
        assert detail is not None, raw[:300]
        assert len(detail) == 1, raw[:300]
        child = detail[0]
    validate_bus_element(child)


def read_reply(status: int, raw: bytes) -> Reply:
    root = parse_secure(raw, max_bytes=64 * 1024 * 1024)
    fault = parse_fault(root)
    if fault is None:
        return Reply(status, root, None, None)
    return Reply(status, root, fault.code, fault.description)


# --- the bus -------------------------------------------------------------------------


class WatchedTransport(MemoryTransport):
    """A MemoryTransport that reports pulled deliveries being settled (acked or lapsed)."""

    def __init__(self, *, clock: FakeClock, policy: QueuePolicy | None = None) -> None:
        super().__init__(clock=clock, policy=policy)
        self.settled: asyncio.Queue[Delivery] = asyncio.Queue()

    async def get(self, direction: Direction, participant: str) -> Delivery | None:
        delivery = await super().get(direction, participant)
        if delivery is not None:
            settled = delivery
            delivery.on_settle(lambda: self.settled.put_nowait(settled))
        return delivery


@dataclass
class Bus:
    """The composition root's bus (:class:`gateway.bus.Bus`, as ``root``) with what tests
    need around it: the fake clock, the PKI, a SOAP client per participant."""

    root: RootBus
    transport: WatchedTransport
    clock: FakeClock
    pki: BusPKI
    clients: dict[str, ParticipantClient] = field(default_factory=dict)
    #: Every raw exchange through :meth:`handle`: ``(request, (status, reply))``.
    exchanges: list[tuple[bytes, tuple[int, bytes]]] = field(default_factory=list)

    @property
    def router(self) -> Router:
        return self.root.router

    @property
    def ctx(self) -> BusContext:
        return self.root.ctx

    @property
    def registry(self) -> Registry:
        return self.root.registry

    @property
    def verifier(self) -> XmlVerifier:
        return self.root.ctx.verifier

    @property
    def journal(self) -> Journal:
        return self.root.journal

    @property
    def aggregator(self) -> Aggregator:
        """The root's aggregator (it sends in process, signing with the portal's key)."""
        return self.root.aggregator

    def replies(self, portal: str = "PORTAL") -> ReplyIntake:
        """The aggregator's intake of ``portal``'s replies: ``drain()`` it in a test."""
        return self.root.replies(portal)

    async def handle(self, raw: bytes) -> tuple[int, bytes]:
        result = await self.router.handle(raw)
        self.exchanges.append((raw, result))
        check_against_served_schema(result[1])
        return result

    async def send(self, raw: bytes) -> Reply:
        """Send raw bytes through the router and read the reply (fault or not)."""
        return read_reply(*await self.handle(raw))

    def client(self, mnemonic: str) -> ParticipantClient:
        return self.clients[mnemonic]

    @property
    def portal(self) -> ParticipantClient:
        return self.clients["PORTAL"]

    @property
    def zags(self) -> ParticipantClient:
        return self.clients["ZAGS"]

    async def depth(self, direction: Direction, participant: str) -> int:
        return await self.transport.depth(direction, participant)

    async def journal_queued_marks(self) -> int:
        """Journal QUEUED every published message not handed out yet, as the root's
        ``queued-marks`` task does a second later when it runs its background tasks
        (:mod:`gateway.router.marks`)."""
        return await self.router.journal_queued_marks(everything=True)

    async def report(self, message_id: uuid.UUID | str) -> Report:
        """The message's journal state and history (GetStatus no longer tells them)."""
        return await journal_report(self.journal, message_id)

    async def depths(self) -> dict[str, int]:
        """Ready messages in every queue of every participant."""
        return {
            f"{direction}.{p}": await self.transport.depth(direction, p)
            for p in PARTICIPANTS
            for direction in Direction
        }

    async def close(self) -> None:
        await self.root.close()


async def open_bus(
    *,
    policy: QueuePolicy | None = None,
    max_message_bytes: int = 5 * 1024 * 1024,
    journal: Journal | None = None,
    settings: Settings | None = None,
    guard: CallbackGuard | None = None,
    background: bool = False,
    pki: BusPKI | None = None,
) -> Bus:
    """A started bus on memory transport and ``journal`` (default: in-memory SQLite), plus
    a client each. ``settings`` (default: the defaults) are the root's, with the keys of
    ``pki`` (default: the session's EC one, :func:`bus_pki`); ``guard`` decides where
    result callbacks may go. With ``background`` the root runs its background tasks
    (reply subscriptions of ``settings.api_tokens``' participants, deadlines,
    callbacks); by default a test drives them itself."""
    pki = pki or bus_pki()
    clock = FakeClock(START)
    reg = registry()
    verifier = pki.verifier(clock)
    ctx = BusContext(
        registry=reg,
        verifier=verifier,
        bus_signer=pki.signer(reg.bus_mnemonic),
        catalog=type_catalog(),
        clock=clock,
        ids=MessageIdSource(clock),
        max_message_bytes=max_message_bytes,
    )
    transport = WatchedTransport(clock=clock, policy=policy)
    journal = journal or open_journal("sqlite://")
    root = assemble(
        (settings or Settings()).model_copy(update={"keys_dir": pki.keys_dir}),
        ctx=ctx,
        transport=transport,
        journal=journal,
        service_requests=journal.service_requests(),
        guard=guard,
    )
    await root.start(background=background)
    bus = Bus(root=root, transport=transport, clock=clock, pki=pki)
    for mnemonic in PARTICIPANTS:
        bus.clients[mnemonic] = ParticipantClient(
            signer=pki.signer(mnemonic),
            verifier=verifier,
            clock=clock,
            call=bus.handle,
            bus_mnemonic=reg.bus_mnemonic,
        )
    return bus


async def round_trip(bus: Bus) -> None:
    """PORTAL asks ZAGS for a birth record, ZAGS answers, PORTAL takes the answer: six
    signed SOAP exchanges through the router, every message acknowledged."""
    sent = await bus.portal.send_request(birth_request())
    delivery = await bus.zags.get_request()
    assert delivery is not None, "the request did not reach ZAGS"
    await bus.zags.send_response(delivery.reply_to, content=birth_response())
    await bus.zags.ack(delivery.metadata.message_id)
    got = await bus.portal.get_response()
    assert got is not None, "the answer did not reach PORTAL"
    assert got.original_message_id == sent.message_id
    await bus.portal.ack(got.metadata.message_id)


async def pump(bus: Bus, aggregator: Aggregator, portal: str = "PORTAL") -> int:
    """Apply the replies waiting for ``portal`` to ``aggregator``'s service requests, as
    its subscription would (:meth:`~gateway.aggregator.replies.ReplyIntake.drain`); how
    many changed a request."""
    return await ReplyIntake(aggregator, bus.router, bus.transport, portal).drain()


def send_request_body(
    signer: XmlSigner | None,
    *,
    message_id: uuid.UUID | None = None,
    business: etree._Element | None = None,
    eol: datetime | None = None,
    data_id: str = m.CONSUMER_ID,
) -> etree._Element:
    """A ``SendRequestRequest`` for a birth record, signed by ``signer`` (or unsigned)."""
    body = m.build_send_request(
        message_id or uuid1_at(START),
        business if business is not None else birth_request(),
        eol=eol,
        data_id=data_id,
    )
    return body if signer is None else signed(body, signer)
