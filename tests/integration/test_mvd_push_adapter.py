"""The conformance kit for the MVD migration adapter in push mode (memory transport).

The same harness as ``test_mvd_adapter.py`` (router on memory transport + SQLite, the
mock MVD as a real process), but the runner takes its requests from
:class:`~adapters.sdk.push.PushSource` consuming ``requests.MVD_MIGR`` instead of
pulling with ``GetRequest``; answers still go by SOAP ``SendResponse``.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager

import pytest

from adapters.mvd_migration.adapter import build_mvd_adapter
from adapters.sdk import conformance as kit
from adapters.sdk.push import PushSource
from adapters.sdk.runner import AdapterRunner
from gateway.testing.bus import Bus, open_bus
from gateway.testing.processes import MockAgencyProcess
from gateway.transport.base import Direction
from tests.integration.test_mock_mvd import MOCK_MVD
from tests.integration.test_mvd_adapter import RETRY, SAMPLES, ControlKnob, passport_request

#: Bounded wait of ``next`` for a request that was just sent (memory transport: ms).
WAIT = 10.0


@pytest.fixture(scope="module")
def mock_mvd(tmp_path_factory: pytest.TempPathFactory) -> Iterator[MockAgencyProcess]:
    process = MockAgencyProcess(MOCK_MVD, tmp_path_factory.mktemp("mvd-push") / "mock.log")
    yield process
    process.stop()


@asynccontextmanager
async def push_bus(base_url: str) -> AsyncIterator[tuple[Bus, kit.ConformanceHarness]]:
    bus = await open_bus()
    adapter = build_mvd_adapter(base_url)
    knob = ControlKnob(base_url)
    await knob.set_mode(kit.AgencyMode.NORMAL)
    source = PushSource(bus.transport, "MVD_MIGR", bus.verifier, clock=bus.clock, wait=WAIT)
    runner = AdapterRunner(
        adapter, bus.client("MVD_MIGR"), source=source, retry=RETRY, sleep=kit.RecordingSleep()
    )
    try:
        yield bus, kit.ConformanceHarness(bus.journal, bus.portal, runner, knob)
    finally:
        await source.close()
        await adapter.aclose()
        await bus.close()


def harness_of(base_url: str) -> kit.HarnessFactory:
    @asynccontextmanager
    async def harness() -> AsyncIterator[kit.ConformanceHarness]:
        async with push_bus(base_url) as (_, h):
            yield h

    return harness


@pytest.mark.parametrize("check", kit.CHECKS, ids=kit.check_name)
async def test_conformance_push(check: kit.Check, mock_mvd: MockAgencyProcess) -> None:
    await check(harness_of(mock_mvd.base_url), SAMPLES)


async def test_pushed_request_journal_and_queue(mock_mvd: MockAgencyProcess) -> None:
    async with push_bus(mock_mvd.base_url) as (bus, h):
        sent = await h.portal.send_request(passport_request("7011", "123456"))
        outcome = await h.runner.run_once()
        assert outcome is not None
        assert outcome.acked
        report = await bus.report(sent.message_id)
        assert [t.state for t in report.history] == [
            "ACCEPTED",
            "QUEUED",
            "DELIVERED",
            "RESPONDED",
        ]
        assert report.history[2].reason == "delivered by push"
        assert await bus.depth(Direction.REQUESTS, "MVD_MIGR") == 0
        assert await bus.transport.dead_letters(Direction.REQUESTS, "MVD_MIGR") == []
