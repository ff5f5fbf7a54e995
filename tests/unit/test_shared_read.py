"""The console's shared reads: one read however many viewers, never a stale one kept
past a change the console made itself."""

from __future__ import annotations

import asyncio

import pytest

from gateway.ops.shared import SharedRead


class Reads:
    """A read that counts its calls and finishes when the test lets it."""

    def __init__(self) -> None:
        self.calls = 0
        self.gates: list[asyncio.Event] = []
        self.fail = False

    async def __call__(self) -> int:
        self.calls += 1
        call = self.calls
        gate = asyncio.Event()
        self.gates.append(gate)
        await gate.wait()
        if self.fail:
            raise ConnectionError("the database is down")
        return call

    def finish(self, index: int = -1) -> None:
        self.gates[index].set()


class Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


async def settle() -> None:
    """Let the tasks created so far run to their first wait (a few loop turns)."""
    for _ in range(3):
        await asyncio.sleep(0)


async def test_concurrent_callers_share_one_read_and_it_is_served_while_young() -> None:
    reads, clock = Reads(), Clock()
    shared = SharedRead(reads, max_age_s=1.0, monotonic=clock)
    viewers = [asyncio.create_task(shared.get()) for _ in range(10)]
    await settle()
    reads.finish()
    assert await asyncio.gather(*viewers) == [1] * 10
    assert reads.calls == 1

    clock.now = 0.9
    assert await shared.get() == 1
    assert reads.calls == 1
    clock.now = 1.0
    later = asyncio.create_task(shared.get())
    await settle()
    reads.finish()
    assert await later == 2
    assert reads.calls == 2


async def test_a_failed_read_is_not_kept() -> None:
    reads, clock = Reads(), Clock()
    shared = SharedRead(reads, max_age_s=60.0, monotonic=clock)
    reads.fail = True
    first = asyncio.create_task(shared.get())
    await settle()
    reads.finish()
    with pytest.raises(ConnectionError):
        await first
    reads.fail = False
    second = asyncio.create_task(shared.get())
    await settle()
    reads.finish()
    assert await second == 2


async def test_after_forget_a_read_begun_before_is_neither_joined_nor_kept() -> None:
    reads, clock = Reads(), Clock()
    shared = SharedRead(reads, max_age_s=60.0, monotonic=clock)
    before = asyncio.create_task(shared.get())
    await settle()
    shared.forget()  # e.g. an operator replayed dead letters meanwhile
    after = asyncio.create_task(shared.get())
    await settle()
    assert reads.calls == 2
    reads.finish(0)
    assert await before == 1  # its caller gets what it asked for
    reads.finish(1)
    assert await after == 2
    assert await shared.get() == 2
    assert reads.calls == 2


async def test_a_caller_that_goes_away_does_not_cancel_the_read() -> None:
    reads, clock = Reads(), Clock()
    shared = SharedRead(reads, max_age_s=60.0, monotonic=clock)
    gone, staying = asyncio.create_task(shared.get()), asyncio.create_task(shared.get())
    await settle()
    gone.cancel()
    reads.finish()
    assert await staying == 1
    assert gone.cancelled()
    assert reads.calls == 1
