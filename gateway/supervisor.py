"""Background tasks that outlive their failures: each runs again, after a pause, if it fails.

The bus runs a few loops next to the HTTP server (deadlines, callbacks, the
dead-letter watch, the aggregator's reply subscriptions). A loop that raises is
logged and started again after a backoff that doubles from ``first_delay`` up to
``max_delay``; a run that lasted ``max_delay`` or longer counts as healthy, so the
next failure pauses ``first_delay`` again. A task that returns is done (a one-shot
such as the aggregator's resume). :meth:`Supervisor.close` cancels every task and
waits for each to finish its ``finally`` blocks.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Protocol

import structlog

log = structlog.get_logger(__name__)

Work = Callable[[], Awaitable[None]]


@dataclass(frozen=True)
class Backoff:
    """Pauses between restarts of a failing task, in seconds."""

    first_delay: float = 0.5
    max_delay: float = 30.0

    def delay(self, failures: int) -> float:
        """The pause after the ``failures``-th failure in a row (1, 2, ...)."""
        return float(min(self.first_delay * 2 ** (failures - 1), self.max_delay))


class Supervisor:
    """Named background tasks, restarted with backoff when they fail.

    ``sleep`` and ``monotonic`` are the pause and the clock that decides whether a run
    was healthy; tests hand in their own."""

    def __init__(
        self,
        backoff: Backoff | None = None,
        *,
        sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
        monotonic: Callable[[], float] = time.monotonic,
    ) -> None:
        self.backoff = backoff or Backoff()
        self._sleep = sleep
        self._monotonic = monotonic
        self._tasks: dict[str, asyncio.Task[None]] = {}
        #: Failures so far, by task name (for ``/ready`` and tests).
        self.failures: dict[str, int] = {}

    @property
    def names(self) -> list[str]:
        """The tasks still running."""
        return [name for name, task in self._tasks.items() if not task.done()]

    def spawn(self, name: str, work: Work) -> asyncio.Task[None]:
        """Run ``work()`` as task ``name`` until it returns or the supervisor closes."""
        if name in self._tasks and not self._tasks[name].done():
            raise ValueError(f"a task named {name!r} is running already")
        task = asyncio.create_task(self._run(name, work), name=name)
        self._tasks[name] = task
        return task

    async def _run(self, name: str, work: Work) -> None:
        in_a_row = 0
        while True:
            began = self._monotonic()
            try:
                await work()
            except Exception:
                self.failures[name] = self.failures.get(name, 0) + 1
                healthy = self._monotonic() - began >= self.backoff.max_delay
                in_a_row = 1 if healthy else in_a_row + 1
                pause = self.backoff.delay(in_a_row)
                log.exception("task_failed", task=name, restart_in_s=pause, in_a_row=in_a_row)
                await self._sleep(pause)
                log.info("task_restarted", task=name)
                continue
            log.info("task_finished", task=name)
            return

    async def close(self) -> None:
        """Cancel every task and wait until each has stopped."""
        tasks = list(self._tasks.values())
        for task in tasks:
            task.cancel()
        for task in tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await task
        self._tasks.clear()


async def rounds(work: Work, interval: float, wake: asyncio.Event | None = None) -> None:
    """Run ``work`` forever: every ``interval`` seconds, and at once when ``wake`` is set
    (work this process made). A round that raises ends the loop, for the supervisor to
    log and restart."""
    while True:
        if wake is not None:
            wake.clear()
        await work()
        if wake is None:
            await asyncio.sleep(interval)
            continue
        # Not wait_for: it waits in a task of its own, whose end then has to wake this
        # one (in a fan-out, the callback POST waited for the replies' tasks to end).
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(interval):
                await wake.wait()


class Cancellable(Protocol):
    async def cancel(self) -> None: ...


async def held(subscribe: Callable[[], Awaitable[Cancellable]]) -> Work:
    """Subscribe now, and return the work of a task that keeps the subscription until
    cancelled (then cancels it), subscribing again whenever it is restarted. Subscribing
    before the task starts means the subscription is in place when the caller goes on."""
    first = [await subscribe()]

    async def hold() -> None:
        subscription = first.pop() if first else await subscribe()
        try:
            await asyncio.Future()
        finally:
            await subscription.cancel()

    return hold
