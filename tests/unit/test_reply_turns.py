"""ReplyTurns: the replies to one service request, written one write at a time."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Sequence
from datetime import UTC, datetime
from pathlib import Path
from types import SimpleNamespace
from typing import Any

from gateway.aggregator import load_catalogue
from gateway.aggregator.reply_turns import ReplyTurns
from gateway.aggregator.responses import Answer
from gateway.core.aggregation import PartStatus, new_service_request, on_sent
from gateway.core.clock import FakeClock
from gateway.store.replies import ReplyOutcome, ReplySave

ROOT = Path(__file__).resolve().parents[2]
SERVICE = load_catalogue((ROOT / "config" / "services.toml").read_text("utf-8")).get(
    "child-birth-benefit"
)
NOW = datetime(2026, 12, 1, tzinfo=UTC)


def answer(part_id: str) -> Answer:
    part = next(part for part in SERVICE.parts if part.id == part_id)
    return Answer(message_id=uuid.uuid4(), message_type=part.message_type, data={"n": part_id})


class _Take:
    """A reply's take: its writes go to ``writes`` (the save and the names taken along,
    if ``carries``), its own journaling without a save to ``own``; the first write
    waits for ``hold``, if given."""

    def __init__(
        self,
        name: str,
        writes: list[tuple[ReplySave, list[str]]],
        own: list[str],
        *,
        carries: bool = True,
        hold: asyncio.Event | None = None,
    ) -> None:
        self.response_id = name
        self.writes, self.own, self.carries, self.hold = writes, own, carries, hold
        self.tasks: list[asyncio.Task[Any] | None] = []

    async def __call__(self, save: ReplySave | None, along: Sequence[Any] = ()) -> Any:
        if save is None:  # a reply saved in another's write journals itself
            self.own.append(self.response_id)
            return SimpleNamespace(outcome=ReplyOutcome.TAKEN, saved=None, along=frozenset())
        carried = [take.response_id for take in along] if self.carries else []
        self.writes.append((save, carried))
        self.tasks.append(asyncio.current_task())
        if self.hold is not None and len(self.writes) == 1:
            await self.hold.wait()  # the first write in flight while the others come
        saved = SimpleNamespace(
            id=save.state.id, state=save.state, version=save.expected_version + 1
        )
        return SimpleNamespace(outcome=ReplyOutcome.TAKEN, saved=saved, along=frozenset(carried))

    def answer(self) -> None:
        pass


async def test_replies_that_come_during_a_write_are_written_next_by_the_writing_task() -> None:
    state, turns, writes, own = _recorded(0.0)
    written = asyncio.Event()
    parts = [part.id for part in SERVICE.parts]
    takes = [_Take(part, writes, own, hold=written) for part in parts]
    tasks = [
        asyncio.create_task(turns.take(state.id, part, answer(part), take))
        for part, take in zip(parts, takes, strict=True)
    ]
    await asyncio.sleep(0)  # each task runs up to its write or its turn
    assert len(writes) == 1
    written.set()
    results = await asyncio.gather(*tasks)

    # The second and third replies, waiting by then, were written together by the task
    # that wrote the first, on the record its write saved: the third along in the
    # second's write.
    assert [save.expected_version for save, _ in writes] == [1, 2]
    assert [take.tasks for take in takes] == [[tasks[0]], [tasks[0]], []]
    last, carried = writes[1]
    assert [last.state.part(part).status for part in parts] == [PartStatus.ANSWERED] * 3
    assert carried == [parts[2]]
    assert own == []
    assert [record.version for record, _ in results] == [2, 3, 3]  # type: ignore[union-attr]


async def test_replies_a_take_cannot_carry_journal_themselves_after_it() -> None:
    state, turns, writes, own = _recorded(3600.0)
    parts = [part.id for part in SERVICE.parts]
    tasks = [
        asyncio.create_task(
            turns.take(state.id, part, answer(part), _Take(part, writes, own, carries=False))
        )
        for part in parts
    ]
    results = await asyncio.wait_for(asyncio.gather(*tasks), WAIT)
    [(save, carried)] = writes
    assert save.state.final
    assert carried == []  # nothing taken along: the others journal themselves
    assert sorted(own) == sorted(parts[1:])
    assert [record.version for record, _ in results] == [2, 2, 2]  # type: ignore[union-attr]


async def _value(record: Any) -> Any:
    return record


WAIT = 10  # seconds; bounds only a failure


def _recorded(
    turns_gather: float,
) -> tuple[Any, ReplyTurns, list[tuple[ReplySave, list[str]]], list[str]]:
    """A three-part request sent, its turns with a gathering window of ``turns_gather``
    seconds, and the lists its replies' writes and own journaling go to."""
    state = new_service_request(uuid.uuid4(), SERVICE, NOW)
    for part in SERVICE.parts:
        state = on_sent(state, part.id, uuid.uuid4(), NOW)
    first = SimpleNamespace(id=state.id, state=state, version=1)
    turns = ReplyTurns(
        clock=FakeClock(NOW),
        current=lambda _: _value(first),
        reread=lambda _: _value(first),
        saved=lambda record, final, answer: answer(),
    )
    turns.gather = turns_gather
    return state, turns, [], []


async def test_a_turn_gathers_the_replies_that_come_within_its_window_into_one_write() -> None:
    # An hour's window: the third reply finishes the request, so nobody waits it out.
    state, turns, writes, own = _recorded(3600.0)
    parts = [part.id for part in SERVICE.parts]
    tasks = [
        asyncio.create_task(turns.take(state.id, part, answer(part), _Take(part, writes, own)))
        for part in parts
    ]
    results = await asyncio.wait_for(asyncio.gather(*tasks), WAIT)
    [(save, carried)] = writes  # one write, after the last reply, with all three
    assert save.expected_version == 1
    assert [save.state.part(part).status for part in parts] == [PartStatus.ANSWERED] * 3
    assert save.state.final
    assert carried == parts[1:]  # the others journaled in the same write
    assert own == []
    assert [record.version for record, _ in results] == [2, 2, 2]  # type: ignore[union-attr]


async def test_a_reply_that_leaves_its_request_unfinished_waits_no_longer_than_the_window() -> None:
    state, turns, writes, own = _recorded(0.01)
    part = SERVICE.parts[0].id
    taken = await asyncio.wait_for(
        turns.take(state.id, part, answer(part), _Take(part, writes, own)), WAIT
    )
    assert taken is not None
    [(save, _)] = writes
    assert save.state.part(part).status is PartStatus.ANSWERED
    assert not save.state.final
    assert own == []
