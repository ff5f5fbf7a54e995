"""The operator's console (:class:`gateway.ops.console.BusConsole`) on the memory bus.

The whole bus (:mod:`gateway.testing.bus`) with its fake clock: traffic and answer
times from the journal, queue depths and the oldest message's age, dead letters
replayed and purged with the operator's name in the journal, traces by MessageID and by
service request id, agency checks against a local health endpoint.
"""

from __future__ import annotations

import asyncio
import copy
from collections.abc import AsyncIterator, Awaitable, Callable
from datetime import timedelta
from pathlib import Path
from typing import Any, TypeVar

import pytest
from aiohttp import web

from gateway.aggregator import load_catalogue
from gateway.config import Settings
from gateway.core.errors import NotFound
from gateway.core.lifecycle import MessageState
from gateway.ops.console import BusConsole
from gateway.ops.kpi import Period
from gateway.router.deadletters import PURGED, REPLAYED
from gateway.testing.bus import BIRTH, Bus, birth_request, birth_response, open_bus
from gateway.transport.base import Direction

T = TypeVar("T")
REQ = Direction.REQUESTS
ROOT = Path(__file__).resolve().parents[2]


async def eventually(probe: Callable[[], Awaitable[T | None]], within: float = 10.0) -> T:
    """Poll ``probe`` until it returns something truthy; ``within`` only bounds a failure."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + within
    while not (result := await probe()):
        if loop.time() > deadline:
            raise AssertionError(f"not within {within}s (last: {result!r})")
        await asyncio.sleep(0.01)
    return result


@pytest.fixture
async def bus() -> AsyncIterator[Bus]:
    bus = await open_bus()
    try:
        yield bus
    finally:
        await bus.close()


def console_of(bus: Bus, probes: dict[str, str] | None = None) -> BusConsole:
    root = bus.root
    if probes is not None:
        root.settings = root.settings.model_copy(
            update={"agency_probes": probes, "agency_probe_timeout_s": 2.0}
        )
    return BusConsole.of(root)


async def dead_letter(bus: Bus) -> str:
    """Have ZAGS refuse the next request in its queue; its MessageID, once the journal
    says DEAD_LETTERED."""
    delivery = await bus.transport.get(REQ, "ZAGS")
    assert delivery is not None
    await delivery.reject("unreadable")
    message_id = delivery.message.message_id

    async def journaled() -> bool:
        return (await bus.journal.get(message_id)).state is MessageState.DEAD_LETTERED

    await eventually(journaled)
    return message_id


async def test_overview_counts_traffic_faults_and_answer_times(bus: Bus) -> None:
    answered = await bus.portal.send_request(birth_request())
    await bus.portal.send_request(birth_request())
    bus.clock.advance(timedelta(seconds=3))
    delivery = await bus.zags.get_request()
    assert delivery is not None
    await bus.zags.send_response(delivery.reply_to, content=birth_response())
    bus.clock.advance(timedelta(seconds=1))

    view = await console_of(bus).overview()

    assert len(view.history) == 60
    assert view.rate == view.history[-1]
    assert view.rate.at == bus.clock.now()
    # Two requests and one response in the last minute; no faults.
    assert view.rate.messages_per_s == pytest.approx(3 / 60)
    assert view.rate.faults_per_s == 0
    assert view.rate.latency_p50_s == pytest.approx(3.0)
    assert all(r.messages_per_s == 0 for r in view.history[:-1])
    assert view.availability_target == 0.95
    zags = {q.name: q for q in view.queues}["requests.ZAGS"]
    assert (zags.ready, zags.dead_letters) == (1, 0)
    assert [a.participant for a in view.agencies] == ["ZAGS", "MVD_MIGR", "FNS"]
    [agency] = [a for a in view.agencies if a.participant == "ZAGS"]
    assert agency.requests == 2
    assert agency.answer_p50_s == pytest.approx(3.0)
    assert (agency.reachable, agency.detail) == (None, "not checked yet")
    assert str(answered.message_id) in {
        t.message_id for t in await console_of(bus).trace(str(answered.message_id))
    }


async def test_queue_shows_its_oldest_unsettled_message_and_dead_letters(bus: Bus) -> None:
    await bus.portal.send_request(birth_request())
    bus.clock.advance(timedelta(seconds=90))
    await bus.portal.send_request(birth_request())
    bus.clock.advance(timedelta(seconds=10))
    await dead_letter(bus)  # takes the older one off the queue

    queues = {q.name: q for q in await console_of(bus).queues()}

    zags = queues["requests.ZAGS"]
    assert (zags.ready, zags.dead_letters) == (1, 1)
    assert zags.oldest_age_s == pytest.approx(10.0)
    assert queues["requests.FNS"].oldest_age_s == 0.0  # nothing waits
    assert queues["responses.PORTAL"].ready == 0


async def test_replay_and_purge_name_the_operator_in_the_journal(bus: Bus) -> None:
    console = console_of(bus)
    await bus.portal.send_request(birth_request())
    replayed = await dead_letter(bus)

    report = await console.replay(REQ, "ZAGS", None, operator="ivanov")

    assert report.replayed == (replayed,)
    last = (await bus.journal.history(replayed))[-1]
    assert (last.to_state, last.reason, last.actor) == (MessageState.QUEUED, REPLAYED, "ivanov")

    delivery = await bus.transport.get(REQ, "ZAGS")
    assert delivery is not None
    assert delivery.message.message_id == replayed
    await delivery.reject("still unreadable")

    async def again() -> bool:
        return (await bus.journal.get(replayed)).state is MessageState.DEAD_LETTERED

    await eventually(again)
    assert [d.message_id for d in await console.dead_letters(REQ, "ZAGS")] == [replayed]

    assert await console.purge(REQ, "ZAGS", operator="petrova") == 1

    assert await console.dead_letters(REQ, "ZAGS") == []
    assert await bus.transport.dead_letter_count(REQ, "ZAGS") == 0
    last = (await bus.journal.history(replayed))[-1]
    assert (last.to_state, last.reason, last.actor) == (MessageState.PURGED, PURGED, "petrova")
    # A second purge finds nothing; nothing more is journaled.
    assert await console.purge(REQ, "ZAGS", operator="petrova") == 0
    assert (await bus.journal.history(replayed))[-1] == last


async def test_purge_drops_expired_letters_too(bus: Bus) -> None:
    sent = await bus.portal.send_request(
        birth_request(), eol=bus.clock.now() + timedelta(minutes=1)
    )
    message_id = str(sent.message_id)
    bus.clock.advance(timedelta(minutes=2))
    console = console_of(bus)
    assert [d.message_id for d in await console.dead_letters(REQ, "ZAGS")] == [message_id]

    async def expired() -> bool:
        return (await bus.journal.get(message_id)).state is MessageState.EXPIRED

    await eventually(expired)

    assert await console.purge(REQ, "ZAGS", operator="ivanov") == 1
    record = await bus.journal.get(message_id)
    assert record.state is MessageState.PURGED
    assert (await bus.journal.history(message_id))[-1].actor == "ivanov"


async def test_purge_leaves_a_letter_the_journal_has_not_dead_lettered(bus: Bus) -> None:
    # The router's watcher is not told: the journal still has the message QUEUED.
    sent = await bus.portal.send_request(birth_request())
    await bus.journal_queued_marks()
    await bus.root.supervisor.close()
    delivery = await bus.transport.get(REQ, "ZAGS")
    assert delivery is not None
    await delivery.reject("unreadable")

    report = await console_of(bus).desk.purge(REQ, "ZAGS", operator="ivanov")

    assert report.purged == ()
    [(message_id, why)] = report.skipped
    assert message_id == str(sent.message_id)
    assert "QUEUED" in why
    assert await bus.transport.dead_letter_count(REQ, "ZAGS") == 1


async def test_trace_of_a_service_request_shows_every_part(bus: Bus) -> None:
    catalogue = load_catalogue((ROOT / "config" / "services.toml").read_text("utf-8"))
    applicant: dict[str, Any] = copy.deepcopy(catalogue.get("child-birth-benefit").example)
    record, _ = await bus.aggregator.submit(
        service="child-birth-benefit", applicant=applicant, participant="PORTAL"
    )
    record = await bus.aggregator.store.get(record.id)
    sent = {str(p.message_id) for p in record.state.parts if p.message_id is not None}
    assert sent

    traces = await console_of(bus).trace(str(record.id))

    assert {t.message_id for t in traces} == sent
    assert all(t.sender == "PORTAL" and t.transitions for t in traces)
    assert await console_of(bus).trace("not-an-id") == ()
    assert await console_of(bus).trace("00000000-0000-1000-8000-000000000000") == ()


async def test_kpis_of_a_period(bus: Bus) -> None:
    await bus.portal.send_request(birth_request())
    delivery = await bus.zags.get_request()
    assert delivery is not None
    bus.clock.advance(timedelta(seconds=2))
    await bus.zags.send_response(delivery.reply_to, content=birth_response())
    now = bus.clock.now()

    report = await console_of(bus).kpis(Period(now - timedelta(hours=1), now), agency="ZAGS")

    [total, by_type] = report.agencies
    assert (total.message_type, by_type.message_type) == (None, BIRTH)
    assert (total.volume, total.answered, total.availability) == (1, 1, 1.0)


async def test_agency_check_probes_its_health_endpoint(bus: Bus, unused_tcp_port: int) -> None:
    app = web.Application()
    statuses = iter([200, 503])

    async def health(_: web.Request) -> web.Response:
        return web.Response(status=next(statuses))

    app.router.add_get("/health", health)
    runner = web.AppRunner(app)
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", unused_tcp_port).start()
    try:
        console = console_of(
            bus,
            {
                "ZAGS": f"http://127.0.0.1:{unused_tcp_port}/health",
                "FNS": "http://127.0.0.1:9/health",  # discard port: nobody listens
            },
        )
        up = await console.check_agency("ZAGS")
        assert up.reachable is True
        assert up.detail.startswith("200 in ")
        down = await console.check_agency("ZAGS")
        assert (down.reachable, down.detail.split(" in ")[0]) == (False, "HTTP 503")
        refused = await console.check_agency("FNS")
        assert refused.reachable is False
        unprobed = await console.check_agency("MVD_MIGR")
        assert unprobed.reachable is None
        listed = {a.participant: a for a in await console.agencies()}
        assert listed["ZAGS"].detail == down.detail
        with pytest.raises(NotFound):
            await console.check_agency("NOBODY")
    finally:
        await runner.cleanup()


def test_settings_read_agency_probes_from_json(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SMEVBUS_AGENCY_PROBES", '{"ZAGS": "http://zags:8091/health"}')
    assert Settings().agency_probes == {"ZAGS": "http://zags:8091/health"}
