"""The batcher behind the journal's accepts: calls of one turn of the loop made as one."""

from __future__ import annotations

import asyncio

import pytest

from gateway.store.batching import Batcher


class Refused(Exception):
    pass


class Recorder:
    """``one`` and ``many`` that record their calls; "bad" items are refused, and a batch
    holding a "poison" item fails as a whole."""

    def __init__(self) -> None:
        self.alone: list[str] = []
        self.batches: list[list[str]] = []
        self.batcher = Batcher(self.one, self.many, key=lambda item: item.split(":")[0])

    async def one(self, item: str) -> str:
        self.alone.append(item)
        await asyncio.sleep(0)
        if item.startswith(("bad", "poison")):
            raise Refused(item)
        return item.upper()

    async def many(self, items: list[str]) -> list[str | Exception]:
        self.batches.append(items)
        await asyncio.sleep(0)
        if any(item.startswith("poison") for item in items):
            raise RuntimeError("the whole batch failed")
        return [Refused(i) if i.startswith("bad") else i.upper() for i in items]


async def test_calls_of_one_turn_are_one_batch_and_each_gets_its_own_result() -> None:
    recorder = Recorder()

    results = await asyncio.gather(
        *(recorder.batcher.submit(item) for item in ("a", "bad", "c")), return_exceptions=True
    )

    assert recorder.batches == [["a", "bad", "c"]]
    assert recorder.alone == []
    assert results[0] == "A"
    assert results[2] == "C"
    assert isinstance(results[1], Refused)


async def test_a_call_alone_is_not_batched_and_later_calls_make_a_new_batch() -> None:
    recorder = Recorder()

    assert await recorder.batcher.submit("a") == "A"
    assert await asyncio.gather(recorder.batcher.submit("b"), recorder.batcher.submit("c")) == [
        "B",
        "C",
    ]

    assert recorder.alone == ["a"]
    assert recorder.batches == [["b", "c"]]


async def test_twins_never_share_a_batch() -> None:
    recorder = Recorder()

    results = await asyncio.gather(
        recorder.batcher.submit("a:1"), recorder.batcher.submit("b"), recorder.batcher.submit("a:2")
    )

    assert results == ["A:1", "B", "A:2"]
    assert recorder.batches == [["a:1", "b"]]
    assert recorder.alone == ["a:2"]


async def test_when_the_batch_fails_each_call_is_made_alone() -> None:
    recorder = Recorder()

    results = await asyncio.gather(
        *(recorder.batcher.submit(item) for item in ("a", "poison", "c")), return_exceptions=True
    )

    assert recorder.batches == [["a", "poison", "c"]]
    assert sorted(recorder.alone) == ["a", "c", "poison"]
    assert results[0] == "A"
    assert results[2] == "C"
    assert isinstance(results[1], Refused)


async def test_a_cancelled_caller_leaves_the_others_their_results() -> None:
    recorder = Recorder()
    first = asyncio.ensure_future(recorder.batcher.submit("a"))
    second = asyncio.ensure_future(recorder.batcher.submit("b"))
    await asyncio.sleep(0)  # both are gathered

    first.cancel()

    assert await second == "B"
    with pytest.raises(asyncio.CancelledError):
        await first
    assert recorder.batches == [["a", "b"]]
