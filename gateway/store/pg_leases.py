"""Connections lent to one store operation at a time, without a pool checkout each.

An asyncpg pool checkout costs a queue, a proxy, an inactivity timer and (on release)
a task, 40-60 µs a time, and a round trip through the bus makes about ten of them.
:class:`Leases` takes up to ``keep`` connections from the pool once and lends them
out again and again, last returned first. A connection an operation left in doubt (it
raised, was cancelled, or left a transaction open) goes back to the pool, which rolls
back, resets or discards it as ever. Past ``keep`` connections in use, a lease is a
plain pool checkout, so the pool's other users (``keep`` is below its size) are
never starved by connections kept here.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import asyncpg


class Leases:
    def __init__(self, pool: asyncpg.Pool, keep: int) -> None:
        self._pool = pool
        self._keep = keep
        #: Kept connections not lent out now.
        self._idle: list[asyncpg.Connection] = []
        #: Kept connections, lent out or not.
        self._kept = 0
        self._closed = False

    @asynccontextmanager
    async def lease(self) -> AsyncIterator[asyncpg.Connection]:
        connection, kept = await self._take()
        try:
            yield connection
        except BaseException:
            await self._give_back(connection, kept, clean=False)
            raise
        await self._give_back(connection, kept, clean=True)

    async def _take(self) -> tuple[asyncpg.Connection, bool]:
        while self._idle:
            connection = self._idle.pop()
            if _usable(connection):
                return connection, True
            self._kept -= 1
            await self._pool.release(connection)  # the pool cleans up after a lost one
        if self._kept < self._keep and not self._closed:
            self._kept += 1
            try:
                return await self._pool.acquire(), True
            except BaseException:
                self._kept -= 1
                raise
        return await self._pool.acquire(), False

    async def _give_back(self, connection: asyncpg.Connection, kept: bool, *, clean: bool) -> None:
        if kept and clean and not self._closed and _usable(connection):
            self._idle.append(connection)
            return
        if kept:
            self._kept -= 1
        await self._pool.release(connection)

    async def close(self) -> None:
        """Give every kept connection back to the pool (those lent out when they return)."""
        self._closed = True
        idle, self._idle = self._idle, []
        self._kept -= len(idle)
        for connection in idle:
            await self._pool.release(connection)


def _usable(connection: asyncpg.Connection) -> bool:
    """Open and outside a transaction (a lost connection the pool took back already
    refuses every call)."""
    try:
        return not connection.is_closed() and not connection.is_in_transaction()
    except asyncpg.InterfaceError:
        return False
