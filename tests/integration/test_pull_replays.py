"""The replay guard of pulls on each journal: a signed pull posted again is refused
and rolls back nothing of the pull it repeats (:mod:`gateway.router.replays`)."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest

from gateway.core.lifecycle import MessageState
from gateway.testing.bus import Bus, birth_request, open_bus, signed, soap
from gateway.transport.base import Direction
from gateway.xml import messages as m
from tests.integration import store_fixtures
from tests.integration.store_fixtures import Backend

backend = store_fixtures.backend
postgres_url = store_fixtures.postgres_url


@pytest.fixture
async def bus(backend: Backend) -> AsyncIterator[Bus]:
    b = await open_bus(journal=backend.open())  # migrates the journal
    try:
        yield b
    finally:
        await b.close()


async def test_a_replayed_pull_is_refused_and_the_served_one_stays_delivered(bus: Bus) -> None:
    first = str((await bus.portal.send_request(birth_request())).message_id)
    second = str((await bus.portal.send_request(birth_request())).message_id)
    selector = m.TypeSelector(timestamp=bus.clock.now())
    captured = soap(signed(m.build_get_request(selector), bus.pki.signer("ZAGS")))

    served = await bus.send(captured)
    assert served.ok, served.description
    assert served.root.findtext(".//{*}MessageMetadata/{*}MessageId") == first

    replay = await bus.send(captured)
    assert (replay.status, replay.code) == (500, "replayed_request")
    assert (await bus.journal.get(first)).state is MessageState.DELIVERED
    assert (await bus.journal.get(second)).state is MessageState.QUEUED
    assert await bus.depth(Direction.REQUESTS, "ZAGS") == 1
