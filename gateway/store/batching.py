"""Writes asked for in the same turn of the event loop, made as one.

A fan-out's parts are journaled by tasks that start together; each write alone is a
statement, a commit and a round trip of its own. :class:`Batcher` gathers the calls made
before the loop gets to its flush (the tasks that were ready together) and runs them in
one batch; each caller gets its own result or error, as if it had called alone.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Hashable
from typing import Generic, TypeVar

T = TypeVar("T")
R = TypeVar("R")


class Batcher(Generic[T, R]):
    """Runs ``many`` on the items submitted in one turn of the loop (``one`` on an item
    alone); ``many`` returns a result or an error for each item, in order. Two items of
    one ``key`` never share a batch: the later is run alone. If ``many`` raises, each
    item of its batch is run alone, so an item that fails the batch fails only its own
    call."""

    def __init__(
        self,
        one: Callable[[T], Awaitable[R]],
        many: Callable[[list[T]], Awaitable[list[R | Exception]]],
        key: Callable[[T], Hashable],
    ) -> None:
        self._one = one
        self._many = many
        self._key = key
        self._gathering: dict[Hashable, tuple[T, asyncio.Future[R]]] | None = None
        self._running: set[asyncio.Task[None]] = set()

    async def submit(self, item: T) -> R:
        loop = asyncio.get_running_loop()
        if self._gathering is None:
            self._gathering = {}
            loop.call_soon(self._flush)
        key = self._key(item)
        if key in self._gathering:
            # A twin is written alone, beside the batch, as two callers' twins always
            # were: the journal settles which one is first.
            return await self._one(item)
        future: asyncio.Future[R] = loop.create_future()
        self._gathering[key] = (item, future)
        return await future

    def _flush(self) -> None:
        batch, self._gathering = list((self._gathering or {}).values()), None
        task = asyncio.get_running_loop().create_task(self._run(batch))
        self._running.add(task)
        task.add_done_callback(self._running.discard)

    async def _run(self, batch: list[tuple[T, asyncio.Future[R]]]) -> None:
        try:
            if len(batch) > 1:
                try:
                    results = await self._many([item for item, _ in batch])
                except Exception:  # noqa: S110 - each item is tried alone below
                    pass
                else:
                    for (_, future), result in zip(batch, results, strict=True):
                        if isinstance(result, Exception):
                            _fail(future, result)
                        else:
                            _settle(future, result)
                    return
            await asyncio.gather(*(self._alone(item, future) for item, future in batch))
        except BaseException:  # cancelled, as the loop closes: leave no caller waiting
            for _, future in batch:
                future.cancel()
            raise

    async def _alone(self, item: T, future: asyncio.Future[R]) -> None:
        try:
            result = await self._one(item)
        except Exception as exc:  # the caller's own failure
            _fail(future, exc)
        else:
            _settle(future, result)


def _settle(future: asyncio.Future[R], result: R) -> None:
    if not future.done():  # its caller may have been cancelled
        future.set_result(result)


def _fail(future: asyncio.Future[R], exc: Exception) -> None:
    if not future.done():
        future.set_exception(exc)
