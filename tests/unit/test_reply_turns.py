"""ReplyTurns: the replies to one service request, written one write at a time."""

from __future__ import annotations

import asyncio
import uuid
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


async def test_replies_that_come_during_a_write_are_written_next_by_the_writing_task() -> None:
    state, turns, _, _ = _recorded(0.0)
    written = asyncio.Event()
    writes: list[tuple[asyncio.Task[Any] | None, ReplySave]] = []
    own_journaling: list[str] = []

    def take(name: str) -> Any:
        async def write(save: ReplySave | None) -> Any:
            if save is None:  # a reply saved in another's write journals itself
                own_journaling.append(name)
                return SimpleNamespace(outcome=ReplyOutcome.TAKEN, saved=None)
            writes.append((asyncio.current_task(), save))
            if len(writes) == 1:
                await written.wait()  # the first write in flight while the others come
            saved = SimpleNamespace(
                id=state.id, state=save.state, version=save.expected_version + 1
            )
            return SimpleNamespace(outcome=ReplyOutcome.TAKEN, saved=saved)

        return write

    parts = [part.id for part in SERVICE.parts]
    tasks = [
        asyncio.create_task(turns.take(state.id, part, answer(part), take(part))) for part in parts
    ]
    await asyncio.sleep(0)  # each task runs up to its write or its turn
    assert len(writes) == 1
    written.set()
    results = await asyncio.gather(*tasks)

    # The second and third replies, waiting by then, were written together by the task
    # that wrote the first, on the record its write saved.
    assert [(task, save.expected_version) for task, save in writes] == [
        (tasks[0], 1),
        (tasks[0], 2),
    ]
    last = writes[1][1].state
    assert [last.part(part).status for part in parts] == [PartStatus.ANSWERED] * 3
    assert own_journaling == [parts[2]]  # the third rode on the second's save
    assert [record.version for record, _ in results] == [2, 3, 3]  # type: ignore[union-attr]


async def _value(record: Any) -> Any:
    return record


WAIT = 10  # seconds; bounds only a failure


def _recorded(turns_gather: float) -> tuple[Any, ReplyTurns, list[ReplySave], list[str]]:
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
        saved=lambda record, final: None,
    )
    turns.gather = turns_gather
    return state, turns, [], []


def _take(name: str, writes: list[ReplySave], own: list[str]) -> Any:
    async def write(save: ReplySave | None) -> Any:
        if save is None:
            own.append(name)
            return SimpleNamespace(outcome=ReplyOutcome.TAKEN, saved=None)
        writes.append(save)
        saved = SimpleNamespace(
            id=save.state.id, state=save.state, version=save.expected_version + 1
        )
        return SimpleNamespace(outcome=ReplyOutcome.TAKEN, saved=saved)

    return write


async def test_a_turn_gathers_the_replies_that_come_within_its_window_into_one_write() -> None:
    # An hour's window: the third reply finishes the request, so nobody waits it out.
    state, turns, writes, own = _recorded(3600.0)
    parts = [part.id for part in SERVICE.parts]
    tasks = [
        asyncio.create_task(turns.take(state.id, part, answer(part), _take(part, writes, own)))
        for part in parts
    ]
    results = await asyncio.wait_for(asyncio.gather(*tasks), WAIT)
    [save] = writes  # one write, after the last reply, with all three
    assert save.expected_version == 1
    assert [save.state.part(part).status for part in parts] == [PartStatus.ANSWERED] * 3
    assert save.state.final
    assert own == parts[1:]  # the others journal themselves after it
    assert [record.version for record, _ in results] == [2, 2, 2]  # type: ignore[union-attr]


async def test_a_reply_that_leaves_its_request_unfinished_waits_no_longer_than_the_window() -> None:
    state, turns, writes, own = _recorded(0.01)
    part = SERVICE.parts[0].id
    taken = await asyncio.wait_for(
        turns.take(state.id, part, answer(part), _take(part, writes, own)), WAIT
    )
    assert taken is not None
    [save] = writes
    assert save.state.part(part).status is PartStatus.ANSWERED
    assert not save.state.final
    assert own == []
