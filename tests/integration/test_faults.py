"""Faults under load against a real ``smevbus serve``, RabbitMQ and PostgreSQL.

Portal clients submit birth-record requests over HTTP, concurrently, while the test
breaks something at a moment chosen by a counter of successful replies (never a
timer):

* the gateway process is SIGKILLed and restarted on the same port, vhost and
  database;
* the broker force-closes the gateway's connections.

Clients that saw a transport error, or a fault that says "retry later", resend the
same signed bytes (same MessageID), as a real client does. Then ZAGS drains its
queue with GetRequest + Ack. What must hold (DESIGN.md section 6): every MessageID
that got a successful reply reaches ZAGS; the journal has exactly one row per
MessageID, every one ACKED, none left in ACCEPTED; a duplicate delivery is only
ever a second copy of one journaled message.
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Awaitable, Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import unquote

import asyncpg
import pytest
from lxml import etree

from gateway.client.http import SoapHttp
from gateway.client.participant import ParticipantClient
from gateway.core.clock import MessageIdSource, SystemClock
from gateway.crypto.devpki import init_dev_pki
from gateway.crypto.keystore import load_signer, load_verifier
from gateway.crypto.xmldsig import XmlVerifier
from gateway.testing.processes import GatewayProcess, fresh_database, isolated_vhost
from tests.integration import store_fixtures
from tests.integration.load import (
    DrainStats,
    LoadStats,
    SignedRequest,
    close_vhost_connections,
    drain,
    participant_over_http,
    queue_depths,
    signed_send_requests,
    submit_all,
)

postgres_url = store_fixtures.postgres_url

ROOT = Path(__file__).resolve().parents[2]
BIRTH_REQUEST = ROOT / "tests" / "data" / "content" / "zags-birth-record.request.xml"
PARTICIPANTS = {"PORTAL": "portal", "ZAGS": "zags", "MVD_MIGR": "mvd", "FNS": "fns"}

MESSAGES = 200
CONCURRENCY = 16
#: Bounds for the bounded waits; generous, because other work shares the machine.
SUBMIT_WITHIN = 90.0
DRAIN_WITHIN = 60.0

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def keys(tmp_path_factory: pytest.TempPathFactory) -> Path:
    keys_dir = tmp_path_factory.mktemp("keys")
    init_dev_pki(keys_dir, {**PARTICIPANTS, "SMEVBUS": "bus"}, clock=SystemClock())
    return keys_dir


@pytest.fixture(scope="module")
def verifier(keys: Path) -> XmlVerifier:
    return load_verifier(keys, SystemClock())


@dataclass
class Bus:
    gateway: GatewayProcess
    vhost: str
    database_url: str


@pytest.fixture
def bus(keys: Path, amqp_url: str, postgres_url: str, tmp_path: Path) -> Iterator[Bus]:
    """A started gateway on a fresh vhost and database (sync: those helpers run their own loop)."""
    with isolated_vhost(amqp_url) as vhost_url, fresh_database() as db_url:
        gateway = GatewayProcess(
            env={
                "SMEVBUS_TRANSPORT": "amqp",
                "SMEVBUS_AMQP_URL": vhost_url,
                "SMEVBUS_DATABASE_URL": db_url,
                "SMEVBUS_KEYS_DIR": str(keys),
                "SMEVBUS_LOG_LEVEL": "INFO",
                # A pull whose reply was lost in the fault comes back within the sweep.
                "SMEVBUS_VISIBILITY_TIMEOUT_S": "5",
                "PYTHONUNBUFFERED": "1",  # the test counts log lines while it runs
            },
            log_path=tmp_path / "gateway.log",
        )
        gateway.start()
        try:
            yield Bus(gateway, unquote(vhost_url.rsplit("/", 1)[1]), db_url)
        finally:
            gateway.stop()


def birth_requests(keys: Path, count: int) -> list[SignedRequest]:
    content = etree.fromstring(BIRTH_REQUEST.read_bytes())
    ids = MessageIdSource(SystemClock())
    return signed_send_requests(
        load_signer(keys, "PORTAL"), [ids.new() for _ in range(count)], content
    )


@dataclass(frozen=True)
class Journaled:
    state: str
    rows: int  # rows with this MessageID in ``messages``
    acked: int  # transitions to ACKED in its history


async def journal_rows(database_url: str) -> dict[str, Journaled]:
    """MessageID -> what the journal holds, for every request, read straight from PostgreSQL."""
    conn = await asyncpg.connect(database_url)
    try:
        rows = await conn.fetch(
            "SELECT m.message_id, m.state, count(*) OVER (PARTITION BY m.message_id) AS n, "
            "(SELECT count(*) FROM transitions t "
            " WHERE t.message_id = m.message_id AND t.to_state = 'ACKED') AS acked "
            "FROM messages m WHERE m.kind = 'request'"
        )
    finally:
        await conn.close()
    return {r["message_id"]: Journaled(r["state"], r["n"], r["acked"]) for r in rows}


async def settled_depths(
    vhost: str, *, sweep: Callable[[], Awaitable[None]], within: float = 30.0
) -> dict[str, int]:
    """ZAGS's request queue and DLQ depths, polled until both are 0 or ``within`` s passed.

    The broker's counters trail the acks a little, hence a bounded poll, not one look;
    while the request queue is not empty, ``sweep`` pulls from it.
    """
    names = ("smevbus.requests.ZAGS", "smevbus.dlq.requests.ZAGS")
    loop = asyncio.get_running_loop()
    deadline = loop.time() + within
    while True:
        depths = await queue_depths(vhost)
        left = {name: depths.get(name, -1) for name in names}
        if not any(left.values()) or loop.time() >= deadline:
            return left
        if left[names[0]] > 0:
            await sweep()
        else:
            await asyncio.sleep(0.5)


async def sweep_once(provider: ParticipantClient, stats: DrainStats) -> None:
    """One GetRequest (+ Ack): the bus drops copies of settled messages on the way."""
    delivery = await provider.get_request()
    if delivery is None:
        await asyncio.sleep(0.2)
        return
    message_id = str(delivery.request_data.findtext("{*}MessageID"))
    stats.deliveries[message_id] += 1
    await provider.ack(uuid.UUID(message_id))


async def submit_break_and_drain(
    bus: Bus,
    keys: Path,
    verifier: XmlVerifier,
    *,
    break_at: tuple[int, ...],
    breaker: Callable[[], Awaitable[None]],
    drain_while_sending: bool,
) -> Outcome:
    """Submit MESSAGES requests; when successes reach each of ``break_at``, run ``breaker``.

    ZAGS drains its queue afterwards, or (``drain_while_sending``) from the start, so
    pulls and Acks also meet the fault.
    """
    signed = birth_requests(keys, MESSAGES)
    url = f"{bus.gateway.base_url}/ws"
    pending = list(break_at)
    trigger = asyncio.Event()
    sent: set[str] | None = None  # the MessageIDs ZAGS must see, once sending is over

    def on_success(stats: LoadStats) -> None:
        if pending and len(stats.succeeded) >= pending[0]:
            pending.pop(0)
            trigger.set()

    # A provider polls with a shorter timeout than a portal waits for an answer: a pull
    # caught in a broker connection loss can stall until the transport gives up.
    async with SoapHttp(url, timeout=30.0) as post, SoapHttp(url, timeout=8.0) as poll:
        zags = participant_over_http(
            poll, signer=load_signer(keys, "ZAGS"), verifier=verifier, clock=SystemClock()
        )
        load = asyncio.create_task(
            submit_all(
                signed,
                post,
                verifier,
                concurrency=CONCURRENCY,
                give_up_after=SUBMIT_WITHIN,
                on_success=on_success,
            )
        )
        draining = (
            asyncio.create_task(
                drain(zags, lambda: sent, within=SUBMIT_WITHIN + DRAIN_WITHIN, workers=4)
            )
            if drain_while_sending
            else None
        )
        breaks = 0
        while breaks < len(break_at):
            waiter = asyncio.create_task(trigger.wait())
            finished, _ = await asyncio.wait({waiter, load}, return_when=asyncio.FIRST_COMPLETED)
            if waiter not in finished:
                waiter.cancel()
                break
            trigger.clear()
            await breaker()
            breaks += 1
        stats = await load
        assert breaks == len(break_at), f"load ended before break {breaks + 1}"
        sent = set(stats.succeeded)
        if draining is None:
            drained = await drain(zags, lambda: sent, within=DRAIN_WITHIN, workers=4)
        else:
            drained = await draining
        # At-least-once publishing may have left a redundant copy in the queue after the
        # last expected delivery; pulling lets the bus drop it (or deliver it, and then
        # it counts as a delivery below).
        left_over = await settled_depths(bus.vhost, sweep=lambda: sweep_once(zags, drained))
    return Outcome(
        {s.message_id for s in signed},
        stats,
        drained,
        await journal_rows(bus.database_url),
        left_over,
    )


@dataclass
class Outcome:
    all_ids: set[str]
    stats: LoadStats
    drained: DrainStats
    journal: dict[str, Journaled]
    #: Messages left in ZAGS's request queue and its dead-letter queue after the drain.
    left_over: dict[str, int]


def check_nothing_lost(outcome: Outcome) -> None:
    all_ids, stats, drained, journal = (
        outcome.all_ids,
        outcome.stats,
        outcome.drained,
        outcome.journal,
    )
    succeeded = set(stats.succeeded)
    # Every client got its answer in the end (it retried the same bytes).
    assert succeeded == all_ids, f"{len(all_ids - succeeded)} requests never got a reply"
    # Everything accepted reached the provider ...
    missing = succeeded - drained.deliveries.keys()
    assert not missing, (
        f"{len(missing)} accepted requests never delivered, e.g. {sorted(missing)[:3]}"
    )
    assert drained.deliveries.keys() <= all_ids, "ZAGS got a request nobody sent"
    # ... and the journal holds one message per MessageID, each acknowledged once.
    assert journal.keys() == all_ids
    assert all(j.rows == 1 for j in journal.values())
    twice = {mid for mid, j in journal.items() if j.acked != 1}
    assert not twice, f"{len(twice)} messages not acknowledged exactly once"
    states = {mid: j.state for mid, j in journal.items()}
    stuck = {mid for mid, state in states.items() if state == "ACCEPTED"}
    assert not stuck, f"{len(stuck)} messages stuck in ACCEPTED"
    not_acked = {mid: state for mid, state in states.items() if state != "ACKED"}
    assert not not_acked, f"not ACKED: {dict(list(not_acked.items())[:5])}"
    # No copy is left behind (held, queued or dead-lettered).
    assert not any(outcome.left_over.values()), f"left in the broker: {outcome.left_over}"


async def test_sigkill_of_the_gateway_mid_load_loses_nothing(
    bus: Bus, keys: Path, verifier: XmlVerifier
) -> None:
    kills = 0

    async def kill_and_restart() -> None:
        nonlocal kills
        await asyncio.to_thread(bus.gateway.kill)
        kills += 1
        await asyncio.to_thread(bus.gateway.start)

    outcome = await submit_break_and_drain(
        bus,
        keys,
        verifier,
        break_at=(MESSAGES // 2,),
        breaker=kill_and_restart,
        drain_while_sending=False,
    )
    report("sigkill", outcome, kills=kills, **log_events(bus))
    assert kills == 1
    assert outcome.stats.transport_errors > 0, "the kill cut nothing off"
    check_nothing_lost(outcome)
    # A redundant copy (republished by a retry) never reaches the provider as a fault.
    assert outcome.drained.get_faults == 0
    assert outcome.drained.ack_faults == 0


async def test_broker_connection_closed_mid_load_loses_nothing(
    bus: Bus, keys: Path, verifier: XmlVerifier
) -> None:
    closed: list[int] = []

    async def close_connections() -> None:
        closed.append(await close_vhost_connections(bus.vhost))

    outcome = await submit_break_and_drain(
        bus,
        keys,
        verifier,
        break_at=(MESSAGES // 3, 2 * MESSAGES // 3),
        breaker=close_connections,
        drain_while_sending=True,
    )
    events = log_events(bus)
    report("broker close", outcome, closed=closed, **events)
    assert events["transport_reconnected"] >= 1, "the gateway never reconnected"
    assert len(closed) == 2
    assert all(n >= 1 for n in closed), f"closed {closed}"
    check_nothing_lost(outcome)


def log_events(bus: Bus) -> dict[str, int]:
    """How often the gateway logged each event of interest (figures for the report)."""
    text = bus.gateway.log_path.read_text(errors="replace")
    names = ("redundant_copy_dropped", "duplicate_submission", "operation_failed")
    return {name: text.count(name) for name in (*names, "transport_reconnected", "transport_retry")}


def report(name: str, outcome: Outcome, **extra: object) -> None:
    stats, drained = outcome.stats, outcome.drained
    duplicates = sum(n - 1 for n in drained.deliveries.values())
    print(
        f"\n[{name}] sent={MESSAGES} ok={len(stats.succeeded)} "
        f"transport_errors={stats.transport_errors} retryable_faults={stats.retryable_faults} "
        f"retried_ids={len(stats.retried_ids)} delivered={len(drained.deliveries)} "
        f"duplicate_deliveries={duplicates} get_faults={drained.get_faults} "
        f"ack_faults={drained.ack_faults} " + " ".join(f"{k}={v}" for k, v in extra.items())
    )
