"""One read shared by every viewer: what the console reads is not read per viewer.

Ten operators with the overview open, each page refreshed every few seconds, would
otherwise run ten queue reads and ten KPI queries per refresh. A :class:`SharedRead`
runs one read at a time, hands its result to every caller waiting on it, and serves
it again while it is younger than ``max_age_s``. A failed read is not kept: the next
caller reads again.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from typing import Generic, TypeVar

T = TypeVar("T")


class SharedRead(Generic[T]):
    def __init__(
        self,
        read: Callable[[], Awaitable[T]],
        max_age_s: float,
        monotonic: Callable[[], float] = time.monotonic,
    ) -> None:
        self._read = read
        self._max_age_s = max_age_s
        self._monotonic = monotonic
        #: Bumped by :meth:`forget`: a read begun before it is neither joined nor kept.
        self._generation = 0
        self._last: tuple[float, T] | None = None
        self._running: tuple[int, asyncio.Future[T]] | None = None

    async def get(self) -> T:
        if self._last is not None and self._monotonic() - self._last[0] < self._max_age_s:
            return self._last[1]
        if self._running is None or self._running[0] != self._generation:
            self._running = (self._generation, asyncio.ensure_future(self._read_once()))
        # A caller that goes away (a closed page) does not cancel the others' read.
        return await asyncio.shield(self._running[1])

    def forget(self) -> None:
        """The next caller reads afresh (after a change the reader made itself)."""
        self._generation += 1
        self._last = None

    async def _read_once(self) -> T:
        generation, began = self._generation, self._monotonic()
        try:
            value = await self._read()
        finally:
            if self._running is not None and self._running[0] == generation:
                self._running = None
        if generation == self._generation:
            self._last = (began, value)
        return value
