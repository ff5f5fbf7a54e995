"""The router's journal moves: a refused move decides again on what it found, unread."""

from __future__ import annotations

import hashlib
from collections.abc import AsyncIterator
from typing import Any

import pytest

from gateway.core.clock import FakeClock
from gateway.core.envelope import MessageKind
from gateway.core.lifecycle import MessageState as S
from gateway.router.moves import Moves
from gateway.store import open_stores
from gateway.store.base import Store
from gateway.store.records import MessageRecord, NewMessage

ID = "00000000-0000-0000-0000-000000000001"


class Reads:
    """Counts the journal reads a move makes: ``get``, and a move told no state (which
    reads the state first)."""

    def __init__(self, store: Store) -> None:
        self.count = 0
        get, transition = store.get, store.transition

        async def counted_get(message_id: str) -> MessageRecord:
            self.count += 1
            return await get(message_id)

        async def counted_transition(*args: Any, **kwargs: Any) -> MessageRecord:
            if kwargs.get("expected_state") is None:
                self.count += 1
            return await transition(*args, **kwargs)

        store.get = counted_get  # type: ignore[method-assign]
        store.transition = counted_transition  # type: ignore[method-assign]


@pytest.fixture
async def journal() -> AsyncIterator[Store]:
    stores = open_stores("sqlite://")
    await stores.journal.migrate()
    try:
        yield stores.journal
    finally:
        await stores.close()


async def accepted(journal: Store, clock: FakeClock) -> MessageRecord:
    xml = b"<Request/>"
    message = NewMessage(
        message_id=ID,
        kind=MessageKind.REQUEST,
        sender="PORTAL",
        recipient="ZAGS",
        message_type="urn:x",
        content_sha256=hashlib.sha256(xml).hexdigest(),
        xml=xml,
    )
    return (await journal.accept(message, at=clock.now())).record


async def test_a_publisher_second_to_a_consumer_keeps_its_move_without_a_read(
    journal: Store,
) -> None:
    clock = FakeClock()
    moves = Moves(journal, clock)
    record = await accepted(journal, clock)
    # A fast consumer journaled it QUEUED and DELIVERED before the broker's confirm.
    await moves.move(ID, S.QUEUED, "seen in requests.ZAGS", seen=record)
    await moves.move_from(ID, S.QUEUED, S.DELIVERED, "attempt 1")
    reads = Reads(journal)

    found = await moves.mark_queued(record, "to requests.ZAGS")

    assert found.state is S.DELIVERED
    assert reads.count == 0
    history = [t.to_state for t in await journal.history(ID)]
    assert history == [S.ACCEPTED, S.QUEUED, S.DELIVERED]


async def test_a_move_on_a_stale_record_is_decided_again_on_what_it_found(
    journal: Store,
) -> None:
    clock = FakeClock()
    moves = Moves(journal, clock)
    queued = await moves.mark_queued(await accepted(journal, clock), "published")
    await moves.move_from(ID, S.QUEUED, S.DELIVERED, "attempt 1")  # by another process
    reads = Reads(journal)

    expired = await moves.move(ID, S.EXPIRED, "past its end of life", seen=queued)

    assert expired.state is S.EXPIRED
    assert reads.count == 0
    history = [(t.from_state, t.to_state) for t in await journal.history(ID)][-1]
    assert history == (S.DELIVERED, S.EXPIRED)
