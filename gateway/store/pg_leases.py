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

from types import TracebackType

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

    def lease(self) -> Lease:
        """One connection for ``async with``, back here (or to the pool) at its end."""
        return Lease(self)

    async def _take(self) -> tuple[asyncpg.Connection, bool]:
        while self._idle:
            connection = self._idle.pop()
            # It came back outside a transaction (_give_back): only a loss may have
            # happened to it since.
            if _open(connection):
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
        if (
            kept
            and clean
            and not self._closed
            and _open(connection)
            and not connection.is_in_transaction()
        ):
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


class Lease:
    """A class, not a generator: an async generator context manager costs two more
    objects and the event loop's async-generator bookkeeping, on every store operation."""

    __slots__ = ("_connection", "_kept", "_leases")

    def __init__(self, leases: Leases) -> None:
        self._leases = leases

    async def __aenter__(self) -> asyncpg.Connection:
        self._connection, self._kept = await self._leases._take()
        return self._connection

    async def __aexit__(
        self,
        kind: type[BaseException] | None,
        error: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        # Raised or cancelled: the connection may be in doubt, the pool cleans it up.
        await self._leases._give_back(self._connection, self._kept, clean=kind is None)


def _open(connection: asyncpg.Connection) -> bool:
    """Not lost (a lost connection the pool took back already refuses every call)."""
    try:
        return not connection.is_closed()
    except asyncpg.InterfaceError:
        return False
