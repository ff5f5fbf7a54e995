"""The replay guard of pulls on each journal: a signed pull posted again is refused
and rolls back nothing of the pull it repeats (:mod:`gateway.router.replays`)."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import pytest

from gateway.core.errors import InvalidContent
from gateway.core.lifecycle import MessageState
from gateway.router.pulls import Pulls
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
    assert await bus.journal_queued_marks() == 1  # the second's: nothing handed it out
    assert (await bus.journal.get(second)).state is MessageState.QUEUED
    assert await bus.depth(Direction.REQUESTS, "ZAGS") == 1


async def test_a_pull_failing_after_its_delivery_is_served_again_and_the_message_with_it(
    bus: Bus, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The pull's digest and its DELIVERED move commit each alone: the move stays when
    the reply then cannot be built, the message goes back to the queue, and the same
    signed pull, retried, hands it out (the copy is not taken for one held here)."""
    sent = str((await bus.portal.send_request(birth_request())).message_id)
    build = Pulls._delivery_of
    failures = [InvalidContent("a stored message lost its signed part")]

    def failing_once(self: Pulls, *args: Any) -> Any:
        if failures:
            raise failures.pop()
        return build(self, *args)

    monkeypatch.setattr(Pulls, "_delivery_of", failing_once)
    selector = m.TypeSelector(timestamp=bus.clock.now())
    pull = soap(signed(m.build_get_request(selector), bus.pki.signer("ZAGS")))

    failed = await bus.send(pull)
    assert failed.code == "invalid_content"
    assert (await bus.journal.get(sent)).state is MessageState.DELIVERED
    assert await bus.depth(Direction.REQUESTS, "ZAGS") == 1

    retried = await bus.send(pull)
    assert retried.ok, retried.description
    assert retried.root.findtext(".//{*}MessageMetadata/{*}MessageId") == sent
    history = [t.to_state for t in await bus.journal.history(sent)]
    assert history[-3:] == [MessageState.DELIVERED, MessageState.QUEUED, MessageState.DELIVERED]
