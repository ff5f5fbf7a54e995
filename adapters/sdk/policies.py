"""How an adapter runner waits: agency retries, polling backoff, and the sleep it uses.

Delays are plain seconds (schedules of :mod:`gateway.core.backoff`) handed to an
injectable ``sleep`` (``asyncio.sleep`` in production,
:class:`adapters.sdk.conformance.RecordingSleep` in tests), so tests of backoff never
wait.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass

from gateway.core import backoff

Sleep = Callable[[float], Awaitable[None]]


@dataclass(frozen=True)
class RetryPolicy:
    """How the agency call is retried while the agency is unavailable."""

    attempts: int = 3
    """Calls of the handler in all (1 = no retry)."""
    delays: tuple[float, ...] = (0.5, 2.0, 5.0)
    """Seconds before retry 1, 2, ...; the last one repeats."""
    call_timeout: float | None = 30.0
    """Seconds one handler call may take; past it the agency counts as unavailable."""

    def __post_init__(self) -> None:
        if self.attempts < 1:
            raise ValueError("attempts must be at least 1")

    def delay(self, retry: int) -> float:
        return backoff.delay(backoff.stepped(self.delays), retry)


@dataclass(frozen=True)
class PollPolicy:
    """Backoff of the loop while the queue is empty or the bus cannot be reached."""

    interval: float = 0.5
    max_interval: float = 10.0
    factor: float = 2.0

    def delay(self, idle_polls: int) -> float:
        schedule = backoff.exponential(self.interval, self.max_interval, self.factor)
        return backoff.delay(schedule, idle_polls)
