"""The background samplers and :func:`gateway.ops.queues.read_queues` on the in-process
bus: the figures they read, and that a failing or slow source (management API down,
journal slow) keeps the last figures and never holds up a message."""

from __future__ import annotations

import asyncio
import dataclasses
from collections.abc import Mapping, Sequence
from datetime import timedelta
from typing import Any

from aiohttp import web
from cryptography import x509

from gateway.ops.kpi_queries import Params
from gateway.ops.queues import ManagementApi, read_queues
from gateway.ops.samplers import Samplers
from gateway.testing.bus import (
    Bus,
    birth_request,
    open_bus,
    round_trip,
)
from gateway.testing.processes import free_port
from gateway.testing.scrape import this_process
from gateway.transport.base import Direction


def view(samplers: Samplers, name: str) -> Any:
    (found,) = [v for v in samplers.queues if v.name == name]
    return found


# --- what they read ------------------------------------------------------------------------


async def test_queue_figures_come_from_the_transport_and_ages_from_the_journal(bus: Bus) -> None:
    samplers = bus.root.samplers
    await bus.portal.send_request(birth_request())
    bus.clock.advance(timedelta(seconds=20))
    await bus.portal.send_request(birth_request())
    bus.clock.advance(timedelta(seconds=10))
    taken = await bus.zags.get_request()  # one handed out, not yet acknowledged
    assert taken is not None

    assert await samplers.sample_all()

    zags = view(samplers, "requests.ZAGS")
    assert (zags.ready, zags.unacked, zags.consumers, zags.dead_letters) == (1, 1, 0, 0)
    assert zags.oldest_age_s == 30.0  # the first request, QUEUED 30 s ago, then DELIVERED
    assert view(samplers, "responses.PORTAL").oldest_age_s == 0.0
    page = this_process()
    q = {"queue": "requests.ZAGS"}
    assert page.value("smevbus_queue_messages", **q, state="ready") == 1
    assert page.value("smevbus_queue_messages", **q, state="unacked") == 1
    assert page.value("smevbus_queue_consumers", **q) == 0
    assert page.value("smevbus_queue_oldest_message_age_seconds", **q) == 30.0


async def test_consumers_of_a_subscription_are_counted(bus: Bus) -> None:
    async def never(_: object) -> None:
        raise AssertionError("nothing is published")

    subscription = await bus.transport.consume(Direction.REQUESTS, "FNS", never)
    try:
        views = await read_queues(bus.transport, ["FNS"], now=bus.clock.now())
    finally:
        await subscription.cancel()
    assert [(v.name, v.consumers, v.oldest_age_s) for v in views] == [
        ("requests.FNS", 1, None),  # no journal given: ages unknown
        ("responses.FNS", 0, None),
    ]
    after = await read_queues(bus.transport, ["FNS"], now=bus.clock.now())
    assert after[0].consumers == 0


async def test_dead_letters_are_exported_by_reason_every_reason_present(bus: Bus) -> None:
    samplers = bus.root.samplers
    await bus.portal.send_request(birth_request())
    delivery = await bus.transport.get(Direction.REQUESTS, "ZAGS")
    assert delivery is not None
    await delivery.reject("not for us")

    assert await samplers.sample_all()

    assert view(samplers, "requests.ZAGS").dead_letters == 1
    page = this_process()
    dead = "smevbus_dead_letters"
    assert page.value(dead, participant="ZAGS", reason="rejected") == 1
    assert page.has(dead, participant="ZAGS", reason="delivery_limit")
    assert page.value(dead, participant="ZAGS", reason="delivery_limit") == 0
    assert page.value(dead, participant="MVD_MIGR", reason="rejected") == 0


async def test_availability_over_the_window_and_certificate_expiry(bus: Bus) -> None:
    samplers = bus.root.samplers
    await round_trip(bus)
    bus.clock.advance(timedelta(seconds=1))  # the window ends now, exclusive

    assert await samplers.sample_all()

    assert samplers.availability["ZAGS"] == 1.0
    page = this_process()
    assert page.value("smevbus_agency_availability_ratio", agency="ZAGS") == 1.0
    pem = (bus.pki.keys_dir / "ZAGS.cert.pem").read_bytes()
    not_after = x509.load_pem_x509_certificate(pem).not_valid_after_utc
    expiry = "smevbus_certificate_expiry_timestamp_seconds"
    assert page.value(expiry, participant="ZAGS") == not_after.timestamp()
    assert page.has(expiry, participant="SMEVBUS")


async def test_the_bus_runs_its_samplers_as_supervised_tasks() -> None:
    bus = await open_bus(background=True)
    try:
        names = set(bus.root.supervisor.names)
    finally:
        await bus.close()
    assert {"sampler.queues", "sampler.availability", "sampler.certificates"} <= names


# --- failing and slow sources ---------------------------------------------------------------


class SlowJournal:
    """A journal database whose reads wait until the test lets them go on (or fail)."""

    def __init__(self, fail: bool = False) -> None:
        self.entered = asyncio.Event()
        self.go_on = asyncio.Event()
        self.fail = fail

    @property
    def dialect(self) -> str:
        return "sqlite"

    async def fetch(self, sql: str, params: Params) -> Sequence[Mapping[str, Any]]:
        self.entered.set()
        await self.go_on.wait()
        if self.fail:
            raise ConnectionError("the database went away")
        return []

    async def close(self) -> None:
        pass


def failures(sampler: str) -> float:
    return this_process().value("smevbus_sampler_failures_total", sampler=sampler)


async def test_a_slow_journal_holds_up_the_sampler_and_no_message(bus: Bus) -> None:
    slow = SlowJournal()
    samplers = dataclasses.replace(bus.root.samplers, journal=slow)
    sampling = asyncio.create_task(samplers.sample_queues())
    await slow.entered.wait()

    await round_trip(bus)  # SOAP through the router while the sampler waits

    assert not sampling.done()
    slow.go_on.set()
    await sampling
    assert view(samplers, "requests.ZAGS").oldest_age_s == 0.0


async def test_a_failing_round_keeps_the_last_figures_and_is_counted(bus: Bus) -> None:
    samplers = bus.root.samplers
    await bus.portal.send_request(birth_request())
    assert await samplers.sample_all()
    good = samplers.queues
    before = failures("queues")

    broken = SlowJournal(fail=True)
    broken.go_on.set()
    failing = dataclasses.replace(samplers, journal=broken, queues=good)
    await bus.portal.send_request(birth_request())
    assert not await failing.round("queues", failing.sample_queues)

    assert failing.queues == good
    assert view(failing, "requests.ZAGS").ready == 1
    assert this_process().value("smevbus_queue_messages", queue="requests.ZAGS", state="ready") == 1
    assert failures("queues") - before == 1


async def test_management_api_down_fails_the_round_not_the_messages(bus: Bus) -> None:
    samplers = bus.root.samplers
    assert await samplers.sample_all()
    good = samplers.queues
    before = failures("queues")
    closed = f"http://127.0.0.1:{free_port()}"
    down = dataclasses.replace(
        samplers, management=ManagementApi(closed, "amqp://guest:guest@127.0.0.1/")
    )

    assert not await down.round("queues", down.sample_queues)
    await round_trip(bus)

    assert down.queues == good
    assert failures("queues") - before == 1


async def test_management_api_figures_replace_the_transports(bus: Bus) -> None:
    asked: list[tuple[str, str, str | None]] = []

    async def queues(request: web.Request) -> web.Response:
        asked.append(
            (
                request.match_info["vhost"],
                request.query["columns"],
                request.headers.get("Authorization"),
            )
        )
        return web.json_response(
            [
                {"name": "smevbus.requests.ZAGS", "messages_ready": 7,
                 "messages_unacknowledged": 3, "consumers": 2},
                {"name": "smevbus.dlq.requests.ZAGS", "messages_ready": 0,
                 "messages_unacknowledged": 0, "consumers": 0},
            ]
        )  # fmt: skip

    app = web.Application()
    app.router.add_get("/api/queues/{vhost}", queues)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = runner.addresses[0][1]
    try:
        api = ManagementApi(f"http://127.0.0.1:{port}", "amqp://ops:secret@127.0.0.1/bus-1")
        views = await read_queues(bus.transport, ["ZAGS"], now=bus.clock.now(), management=api)
    finally:
        await runner.cleanup()

    zags, responses = views
    assert (zags.ready, zags.unacked, zags.consumers) == (7, 3, 2)
    assert (responses.ready, responses.unacked) == (0, 0)  # not listed: the transport's
    ((vhost, columns, auth),) = asked
    assert vhost == "bus-1"
    assert "messages_unacknowledged" in columns
    assert auth == "Basic b3BzOnNlY3JldA=="  # ops:secret, from the AMQP URL


async def test_read_queues_lists_both_queues_of_every_participant(bus: Bus) -> None:
    await bus.portal.send_request(birth_request())
    mnemonics = bus.registry.mnemonics
    views = await read_queues(bus.transport, mnemonics, now=bus.clock.now())
    assert [v.name for v in views] == [
        f"{d}.{p}" for p in mnemonics for d in ("requests", "responses")
    ]
    assert {v.name: v.ready for v in views if v.ready} == {"requests.ZAGS": 1}
