"""Backoff schedules: how long to wait after the ``n``-th failure, defined once.

The schedules are tenacity wait strategies, so a retry loop can hand them to
:class:`tenacity.AsyncRetrying` as they are; a loop that is not the retry of one call
(an idle poll, a dead-letter handler offered its event again, a callback schedule kept
in the database) asks :func:`delay` for the wait after its ``n``-th failure.
"""

from __future__ import annotations

from tenacity import RetryCallState, Retrying, wait_chain, wait_exponential, wait_fixed
from tenacity.wait import wait_base

_RETRYING = Retrying()


def exponential(first: float, cap: float, factor: float = 2.0) -> wait_base:
    """``first``, ``first * factor``, ``first * factor**2``, ... seconds, at most ``cap``."""
    return wait_exponential(multiplier=first, max=cap, exp_base=factor)


def stepped(delays: tuple[float, ...]) -> wait_base:
    """``delays[0]``, ``delays[1]``, ... seconds, the last one repeating (none: no wait)."""
    return wait_chain(*(wait_fixed(d) for d in delays)) if delays else wait_fixed(0)


def delay(schedule: wait_base, failures: int) -> float:
    """Seconds ``schedule`` waits after failure number ``failures`` (counted from 1; a
    smaller number counts as 1)."""
    state = RetryCallState(retry_object=_RETRYING, fn=None, args=(), kwargs={})
    state.attempt_number = max(failures, 1)
    return float(schedule(state))
