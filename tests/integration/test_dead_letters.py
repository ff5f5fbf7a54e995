"""Nothing is lost: what the transport dead-letters, the journal says, and replay undoes.

A whole bus (Router, SQLite journal, signed ParticipantClients) on the memory
transport and on RabbitMQ in a vhost of its own. The router, the transport and the
clients share one FakeClock: on memory the test moves it past an end of life; on
RabbitMQ the broker also expires by real time (the end of life travels as a real
TTL). Visibility timeouts are real, and short. Waits are bounded polls of the
journal or the queue; no assertion depends on how long anything took.
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from contextlib import asynccontextmanager, contextmanager
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path
from typing import TypeVar

import pytest
import structlog.testing
from typer.testing import CliRunner

from gateway.bus import assemble
from gateway.cli import app
from gateway.client.participant import ParticipantClient
from gateway.config import Settings
from gateway.core.clock import FakeClock, MessageIdSource
from gateway.core.lifecycle import MessageState
from gateway.ops.deadletters import DeadLetterDesk
from gateway.router.context import BusContext
from gateway.router.deadletters import REPLAYED, DeadLetterJournal
from gateway.router.router import Router
from gateway.store import Journal, open_journal
from gateway.store.records import MessageRecord
from gateway.testing.bus import BIRTH, START, birth_request, bus_pki, registry
from gateway.testing.processes import isolated_vhost
from gateway.transport import (
    DeadLetter,
    DeadLetterEvent,
    DeadLetterReason,
    Direction,
    MemoryTransport,
    Message,
    QueuePolicy,
    Transport,
)
from gateway.transport.amqp import AmqpTransport
from gateway.xml.schema import type_catalog

T = TypeVar("T")

REQ = Direction.REQUESTS
POLICY = QueuePolicy(
    max_deliveries=2,
    retry_delays=(timedelta(milliseconds=50),),
    visibility_timeout=timedelta(milliseconds=300),
    prefetch=8,
)
#: An end of life a little ahead: on RabbitMQ it becomes a real 300 ms TTL.
LIFETIME = timedelta(milliseconds=300)
WAIT = 15.0  # bounds a wait for something that should happen; never a measurement


@dataclass
class Bus:
    kind: str
    router: Router
    transport: Transport
    store: Journal
    clock: FakeClock
    portal: ParticipantClient
    zags: ParticipantClient

    @property
    def desk(self) -> DeadLetterDesk:
        return DeadLetterDesk(self.transport, self.store, self.clock)

    async def state_becomes(self, message_id: str, state: MessageState) -> MessageRecord:
        async def probe() -> MessageRecord | None:
            record = await self.store.get(message_id)
            return record if record.state is state else None

        return await eventually(probe)

    async def reasons(self, message_id: str) -> list[tuple[str, str | None]]:
        return [(str(t.to_state), t.reason) for t in await self.store.history(message_id)]


async def eventually(probe: Callable[[], Awaitable[T | None]], *, within: float = WAIT) -> T:
    """Poll ``probe`` until it returns something truthy; fail after ``within`` s."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + within
    while True:
        result = await probe()
        if result:
            return result
        if loop.time() > deadline:
            raise AssertionError(f"condition not met within {within}s (last: {result!r})")
        await asyncio.sleep(0.02)


@contextmanager
def broker_for(kind: str, request: pytest.FixtureRequest) -> Iterator[str]:
    """An AMQP URL on a fresh vhost (the events queue is per vhost), or ``""`` for memory."""
    if kind == "memory":
        yield ""
        return
    with isolated_vhost(request.getfixturevalue("amqp_url")) as url:
        yield url


@asynccontextmanager
async def running_bus(
    kind: str, amqp_url: str, database_url: str = "sqlite://", policy: QueuePolicy = POLICY
) -> AsyncIterator[Bus]:
    pki = bus_pki()
    reg = registry()
    clock = FakeClock(START)
    verifier = pki.verifier(clock)
    ctx = BusContext(
        registry=reg,
        verifier=verifier,
        bus_signer=pki.signer(reg.bus_mnemonic),
        catalog=type_catalog(),
        clock=clock,
        ids=MessageIdSource(clock),
    )
    transport: Transport = (
        MemoryTransport(clock=clock, policy=policy)
        if kind == "memory"
        else await AmqpTransport.connect(
            amqp_url, policy=policy, clock=clock, reconnect_timeout=WAIT
        )
    )
    store = open_journal(database_url)
    root = assemble(
        Settings(keys_dir=pki.keys_dir),
        ctx=ctx,
        transport=transport,
        journal=store,
        service_requests=store.service_requests(),
    )
    await root.start(background=False)  # migrates, declares, watches the dead letters
    router = root.router

    def client(mnemonic: str) -> ParticipantClient:
        return ParticipantClient(
            signer=pki.signer(mnemonic),
            verifier=verifier,
            clock=clock,
            call=router.handle,
            bus_mnemonic=reg.bus_mnemonic,
        )

    try:
        yield Bus(kind, router, transport, store, clock, client("PORTAL"), client("ZAGS"))
    finally:
        await root.close()


@pytest.fixture(params=["memory", "amqp"])
async def bus(request: pytest.FixtureRequest) -> AsyncIterator[Bus]:
    with broker_for(request.param, request) as url:
        async with running_bus(request.param, url) as b:
            yield b


async def test_unacked_request_is_dead_lettered_journaled_and_replayed(bus: Bus) -> None:
    sent = await bus.portal.send_request(birth_request())
    message_id = str(sent.message_id)

    first = await bus.zags.get_request()
    assert first is not None
    assert first.reply_to == message_id
    # Never acked: it comes back once, then the delivery limit dead-letters it.
    again = await eventually(bus.zags.get_request)
    assert again.reply_to == message_id
    record = await bus.state_becomes(message_id, MessageState.DEAD_LETTERED)

    assert record.recipient == "ZAGS"
    state, reason = (await bus.reasons(message_id))[-1]
    assert state == "DEAD_LETTERED"
    assert reason is not None
    assert reason.startswith("delivery_limit")
    assert await bus.zags.get_request() is None
    [listed] = await bus.desk.listing(REQ, "ZAGS")
    assert (listed.message_id, listed.reason) == (message_id, DeadLetterReason.DELIVERY_LIMIT)
    assert (listed.sender, listed.message_type) == ("PORTAL", BIRTH)
    assert listed.journal_state is MessageState.DEAD_LETTERED

    report = await bus.desk.replay(REQ, "ZAGS")
    assert (report.replayed, report.skipped) == ((message_id,), ())
    assert (await bus.reasons(message_id))[-1] == ("QUEUED", REPLAYED)
    replayed = await eventually(bus.zags.get_request)
    assert replayed.reply_to == message_id
    await bus.zags.ack(sent.message_id)
    assert (await bus.store.get(message_id)).state is MessageState.ACKED
    assert await bus.desk.listing(REQ, "ZAGS") == []


async def test_request_past_its_end_of_life_is_journaled_expired_never_delivered(
    bus: Bus,
) -> None:
    sent = await bus.portal.send_request(birth_request(), eol=bus.clock.now() + LIFETIME)
    message_id = str(sent.message_id)
    bus.clock.advance(LIFETIME * 2)

    assert await bus.zags.get_request() is None  # on memory, this look expires it
    await bus.state_becomes(message_id, MessageState.EXPIRED)

    history = await bus.reasons(message_id)
    assert history[-1] == ("EXPIRED", "expired: end of life passed")
    assert "DELIVERED" not in [state for state, _ in history]
    [listed] = await bus.desk.listing(REQ, "ZAGS")
    assert listed.reason is DeadLetterReason.EXPIRED
    # Replaying it would only expire it again: the desk refuses and says why.
    report = await bus.desk.replay(REQ, "ZAGS", [message_id])
    assert report.replayed == ()
    assert report.skipped == ((message_id, "expired: its end of life has passed"),)
    assert [d.message_id for d in await bus.desk.listing(REQ, "ZAGS")] == [message_id]


async def test_purge_drops_dead_and_expired_letters_journaled_with_the_operator(
    bus: Bus,
) -> None:
    rejected = await bus.portal.send_request(birth_request())
    delivery = await bus.transport.get(REQ, "ZAGS")
    assert delivery is not None
    await delivery.reject("unreadable")
    await bus.state_becomes(str(rejected.message_id), MessageState.DEAD_LETTERED)
    expired = await bus.portal.send_request(birth_request(), eol=bus.clock.now() + LIFETIME)
    bus.clock.advance(LIFETIME * 2)
    assert await bus.zags.get_request() is None  # on memory, this look expires it
    await bus.state_becomes(str(expired.message_id), MessageState.EXPIRED)
    kept = await bus.portal.send_request(birth_request())
    assert await bus.transport.dead_letter_count(REQ, "ZAGS") == 2

    report = await bus.desk.purge(REQ, "ZAGS", operator="ivanov")

    dropped = {str(rejected.message_id), str(expired.message_id)}
    assert (set(report.purged), report.skipped) == (dropped, ())
    assert await bus.desk.listing(REQ, "ZAGS") == []
    assert await bus.transport.dead_letter_count(REQ, "ZAGS") == 0
    for message_id in dropped:
        [last] = (await bus.store.history(message_id))[-1:]
        assert (last.to_state, last.actor) == (MessageState.PURGED, "ivanov")
    # The queue itself is untouched.
    delivery = await eventually(lambda: bus.transport.get(REQ, "ZAGS"))
    assert delivery.message.message_id == str(kept.message_id)
    await delivery.ack()


async def test_rejected_request_is_journaled_with_the_consumers_reason(bus: Bus) -> None:
    sent = await bus.portal.send_request(birth_request())
    message_id = str(sent.message_id)
    delivery = await bus.transport.get(REQ, "ZAGS")  # an adapter on the transport
    assert delivery is not None
    await delivery.reject("schema_violation: unknown element")

    await bus.state_becomes(message_id, MessageState.DEAD_LETTERED)
    assert (await bus.reasons(message_id))[-1] == (
        "DEAD_LETTERED",
        "rejected: schema_violation: unknown element",
    )
    detail = await bus.desk.show(REQ, "ZAGS", message_id)
    assert detail.summary.detail == "schema_violation: unknown element"
    assert b"SenderProvidedRequestData" in detail.xml
    assert [t.to_state for t in detail.history][-1] is MessageState.DEAD_LETTERED


async def test_recording_is_idempotent_and_never_forces_an_illegal_move() -> None:
    async with running_bus("memory", "") as bus:
        sent = await bus.portal.send_request(birth_request())
        message_id = str(sent.message_id)
        delivery = await bus.zags.get_request()
        assert delivery is not None
        await bus.zags.ack(sent.message_id)
        journal = DeadLetterJournal(bus.store, bus.clock)

        def event(mid: str, reason: DeadLetterReason) -> DeadLetterEvent:
            return DeadLetterEvent(REQ, "ZAGS", DeadLetter(Message(mid, b"<x/>"), reason, "why"))

        before = await bus.store.history(message_id)
        with structlog.testing.capture_logs() as logs:
            # ACKED -> DEAD_LETTERED is not a legal move; an unknown id is not ours.
            await journal.record(event(message_id, DeadLetterReason.REJECTED))
            await journal.record(event(str(uuid.uuid1()), DeadLetterReason.REJECTED))
            await journal.record(event("not-a-uuid", DeadLetterReason.DELIVERY_LIMIT))
            # ACKED -> EXPIRED is legal, and doing it twice changes nothing the second time.
            await journal.record(event(message_id, DeadLetterReason.EXPIRED))
            await journal.record(event(message_id, DeadLetterReason.EXPIRED))
        after = await bus.store.history(message_id)

    assert [t.to_state for t in after] == [*(t.to_state for t in before), MessageState.EXPIRED]
    assert [entry["event"] for entry in logs] == [
        "dead_letter_not_journaled",
        "dead_letter_not_journaled",
        "dead_letter_not_journaled",
        "dead_letter_journaled",
        "dead_letter_already_journaled",
    ]


def test_dlq_command_lists_shows_and_replays(
    request: pytest.FixtureRequest, tmp_path: Path
) -> None:
    with isolated_vhost(request.getfixturevalue("amqp_url")) as url:
        database = f"sqlite:///{tmp_path / 'journal.db'}"
        message_id = asyncio.run(_dead_letter_one(url, database))
        env = {
            "SMEVBUS_TRANSPORT": "amqp",
            "SMEVBUS_AMQP_URL": url,
            "SMEVBUS_DATABASE_URL": database,
            "SMEVBUS_KEYS_DIR": str(bus_pki().keys_dir),
        }
        runner = CliRunner()

        listed = runner.invoke(app, ["dlq", "list", "ZAGS", "--direction", "requests"], env=env)
        assert listed.exit_code == 0, listed.output
        assert message_id in listed.output
        assert "rejected" in listed.output

        shown = runner.invoke(app, ["dlq", "show", "ZAGS", message_id], env=env)
        assert shown.exit_code == 0, shown.output
        assert "bad content" in shown.output
        assert "SenderProvidedRequestData" in shown.output

        unknown = str(uuid.uuid1())
        partly = runner.invoke(app, ["dlq", "replay", "ZAGS", message_id, unknown], env=env)
        assert partly.exit_code == 1, partly.output
        assert "1 replayed, 1 skipped" in " ".join(partly.output.split())

        assert asyncio.run(_journal_state(database, message_id)) is MessageState.QUEUED
        empty = runner.invoke(app, ["dlq", "list", "ZAGS"], env=env)
        assert "no dead letters" in empty.output


async def _dead_letter_one(amqp_url: str, database_url: str) -> str:
    # The default policy, as the command declares the queues with it (RabbitMQ refuses
    # to redeclare a queue with other arguments).
    async with running_bus("amqp", amqp_url, database_url, QueuePolicy()) as bus:
        sent = await bus.portal.send_request(birth_request())
        delivery = await bus.transport.get(REQ, "ZAGS")
        assert delivery is not None
        await delivery.reject("bad content")
        await bus.state_becomes(str(sent.message_id), MessageState.DEAD_LETTERED)
        return str(sent.message_id)


async def _journal_state(database_url: str, message_id: str) -> MessageState:
    async with open_journal(database_url) as store:
        return (await store.get(message_id)).state
