"""QUEUED marks journaled after the sender's answer (:mod:`gateway.router.marks`)."""

from __future__ import annotations

from pathlib import Path

from gateway.core.lifecycle import MessageState
from gateway.router.marks import QueuedMarks
from gateway.router.moves import Moves
from gateway.store import open_journal
from gateway.store.records import MessageRecord
from gateway.testing.bus import Bus, birth_request, open_bus
from gateway.testing.journal import Transition

HOUR = 3600.0


def states(history: tuple[Transition, ...]) -> list[str]:
    return [t.state for t in history]


async def accepted(bus: Bus) -> MessageRecord:
    """A request the router published, still journaled ACCEPTED (its mark pending)."""
    sent = await bus.portal.send_request(birth_request())
    assert sent.status == "requestIsAcceptedBySmev"  # the sender is told it is queued
    record = await bus.journal.get(str(sent.message_id))
    assert record.state is MessageState.ACCEPTED
    return record


async def test_a_message_handed_out_in_time_needs_no_mark(bus: Bus) -> None:
    sent = await bus.portal.send_request(birth_request())
    delivery = await bus.zags.get_request()
    assert delivery is not None

    assert await bus.journal_queued_marks() == 0  # the pull took it through QUEUED
    report = await bus.report(sent.message_id)
    assert states(report.history) == ["ACCEPTED", "QUEUED", "DELIVERED"]
    assert report.history[1].reason == "seen in requests.ZAGS"


async def test_a_mark_waits_its_delay_then_is_journaled(bus: Bus) -> None:
    record = await accepted(bus)
    marks = QueuedMarks(Moves(bus.journal, bus.clock), delay=HOUR)
    marks.publishing(record.message_id)
    assert marks.published(record, "to requests.ZAGS")

    assert await marks.flush() == 0  # not due for an hour
    assert (await bus.journal.get(record.message_id)).state is MessageState.ACCEPTED
    assert await marks.flush(everything=True) == 1
    assert len(marks) == 0
    report = await bus.report(record.message_id)
    assert states(report.history) == ["ACCEPTED", "QUEUED"]
    assert report.history[1].reason == "to requests.ZAGS"


async def test_a_due_mark_is_journaled_by_a_plain_flush(bus: Bus) -> None:
    record = await accepted(bus)
    marks = QueuedMarks(Moves(bus.journal, bus.clock), delay=0.0)
    marks.publishing(record.message_id)
    assert marks.published(record, "to requests.ZAGS")
    assert await marks.flush() == 1
    assert (await bus.journal.get(record.message_id)).state is MessageState.QUEUED


async def test_a_mark_never_takes_back_a_message_moved_on_elsewhere(bus: Bus) -> None:
    record = await accepted(bus)
    marks = QueuedMarks(Moves(bus.journal, bus.clock), delay=0.0)  # another process's
    marks.publishing(record.message_id)
    assert marks.published(record, "to requests.ZAGS")
    assert await bus.zags.get_request() is not None  # handed out by this one

    await marks.flush()
    assert (await bus.journal.get(record.message_id)).state is MessageState.DELIVERED


async def test_a_message_handed_out_while_publishing_gets_no_mark(bus: Bus) -> None:
    record = await accepted(bus)
    marks = QueuedMarks(Moves(bus.journal, bus.clock))
    marks.publishing(record.message_id)
    marks.discard(record.message_id)  # a consumer was faster than the broker's confirm
    assert not marks.published(record, "to requests.ZAGS")
    assert len(marks) == 0


async def test_closing_the_bus_journals_the_marks_still_pending(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'journal.db'}"
    bus = await open_bus(journal=open_journal(url))
    try:
        record = await accepted(bus)
    finally:
        await bus.close()
    async with open_journal(url) as journal:
        assert (await journal.get(record.message_id)).state is MessageState.QUEUED
