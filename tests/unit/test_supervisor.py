"""The supervisor restarts a failing task with backoff, lets a finished one go, stops cleanly."""

from __future__ import annotations

import asyncio

import pytest

from gateway.supervisor import Backoff, Supervisor, rounds


class Pauses:
    """A ``sleep`` that records the pauses asked for and returns at once."""

    def __init__(self) -> None:
        self.asked: list[float] = []

    async def __call__(self, seconds: float) -> None:
        self.asked.append(seconds)


class Ticks:
    """A monotonic clock the test moves."""

    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def test_backoff_doubles_up_to_its_ceiling() -> None:
    backoff = Backoff(first_delay=0.5, max_delay=3.0)
    assert [backoff.delay(n) for n in range(1, 6)] == [0.5, 1.0, 2.0, 3.0, 3.0]


async def test_a_failing_task_is_restarted_with_growing_pauses() -> None:
    pauses = Pauses()
    supervisor = Supervisor(Backoff(first_delay=1.0, max_delay=8.0), sleep=pauses)
    runs = 0
    done = asyncio.Event()

    async def flaky() -> None:
        nonlocal runs
        runs += 1
        if runs <= 4:
            raise RuntimeError(f"failure {runs}")
        done.set()

    task = supervisor.spawn("flaky", flaky)
    await asyncio.wait_for(done.wait(), timeout=5)
    await asyncio.wait_for(task, timeout=5)
    assert runs == 5
    assert pauses.asked == [1.0, 2.0, 4.0, 8.0]
    assert supervisor.failures == {"flaky": 4}
    assert supervisor.names == []  # returned: done, not restarted
    await supervisor.close()


async def test_a_failure_after_a_healthy_run_pauses_briefly_again() -> None:
    pauses = Pauses()
    ticks = Ticks()
    supervisor = Supervisor(Backoff(first_delay=1.0, max_delay=8.0), sleep=pauses, monotonic=ticks)
    runs = 0

    async def work() -> None:
        nonlocal runs
        runs += 1
        if runs == 3:
            ticks.now += 60.0  # this run lasted a minute before it failed
        if runs <= 3:
            raise RuntimeError("down")

    await asyncio.wait_for(supervisor.spawn("work", work), timeout=5)
    assert pauses.asked == [1.0, 2.0, 1.0]
    await supervisor.close()


async def test_close_cancels_running_tasks_and_runs_their_cleanup() -> None:
    supervisor = Supervisor()
    started = asyncio.Event()
    cleaned: list[str] = []

    async def forever(name: str) -> None:
        try:
            started.set()
            await asyncio.Future()
        finally:
            cleaned.append(name)

    supervisor.spawn("a", lambda: forever("a"))
    supervisor.spawn("b", lambda: forever("b"))
    await asyncio.wait_for(started.wait(), timeout=5)
    assert sorted(supervisor.names) == ["a", "b"]
    await supervisor.close()
    assert sorted(cleaned) == ["a", "b"]
    assert supervisor.names == []


async def test_a_name_runs_once_at_a_time() -> None:
    supervisor = Supervisor()
    supervisor.spawn("loop", lambda: asyncio.Future())
    with pytest.raises(ValueError, match="running already"):
        supervisor.spawn("loop", lambda: asyncio.Future())
    await supervisor.close()


async def test_rounds_run_again_as_soon_as_woken() -> None:
    wake = asyncio.Event()
    seen = asyncio.Queue[int]()
    count = 0

    async def work() -> None:
        nonlocal count
        count += 1
        seen.put_nowait(count)

    # An hour between rounds: only the wake can bring the second one.
    task = asyncio.create_task(rounds(work, 3600.0, wake))
    assert await asyncio.wait_for(seen.get(), timeout=5) == 1
    wake.set()
    assert await asyncio.wait_for(seen.get(), timeout=5) == 2
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
