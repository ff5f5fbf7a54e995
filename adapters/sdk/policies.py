"""How an adapter runner waits: agency retries, polling backoff, and the sleep it uses.

Delays are plain seconds handed to an injectable ``sleep`` (``asyncio.sleep`` in
production, :class:`adapters.sdk.conformance.RecordingSleep` in tests), so tests of
backoff never wait.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass

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
        return self.delays[min(retry, len(self.delays)) - 1] if self.delays else 0.0


@dataclass(frozen=True)
class PollPolicy:
    """Backoff of the loop while the queue is empty or the bus cannot be reached."""

    interval: float = 0.5
    max_interval: float = 10.0
    factor: float = 2.0

    def delay(self, idle_polls: int) -> float:
        return float(min(self.interval * self.factor ** max(idle_polls - 1, 0), self.max_interval))
