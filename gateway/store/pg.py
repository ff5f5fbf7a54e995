"""PostgreSQL for the stores: one asyncpg pool, opened on first use.

Every store operation leases one connection for itself (a single statement, or one
transaction), never one per statement, from :class:`~gateway.store.pg_leases.Leases`
(no pool checkout per operation). asyncpg prepares each distinct SQL text once
per connection and keeps it (its statement cache), so the stores' constant SQL is
parsed and planned once per connection. ``schema`` puts every table in that schema
through the connections' ``search_path``.

:attr:`PgDatabase.trace`, when set before the first operation, is called (soon after)
with the SQL of every statement with parameters the stores run (tests and benchmarks
count them so; it costs nothing when unset).
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from datetime import datetime
from types import TracebackType
from typing import Any

import asyncpg

from gateway.store.migrate import upgrade
from gateway.store.pg_leases import Leases
from gateway.store.rows import Row

#: Connections kept open. Every concurrent store operation holds one; the pool must
#: cover the usual concurrency of a gateway process.
DEFAULT_POOL_SIZE = 20


def libpq_url(url: str) -> str:
    """``url`` as asyncpg takes it: ``postgresql+asyncpg://`` and ``postgres://`` mapped
    to ``postgresql://``."""
    scheme, sep, rest = url.partition("://")
    if not sep or scheme.split("+")[0] not in ("postgresql", "postgres"):
        raise ValueError(f"not a PostgreSQL URL: {scheme}://...")
    return "postgresql://" + rest


async def _keep_session(connection: asyncpg.Connection) -> None:
    """What a connection goes back to the pool with: as it is. asyncpg's default reset
    (``RESET ALL``, ``UNLISTEN *``, advisory locks released) is one more statement, and
    one more transaction, per operation; the stores leave no session state behind (no
    ``SET``, ``LISTEN``, advisory or open cursor) and an open transaction is still
    rolled back by the pool itself."""


class PgDatabase:
    """One asyncpg pool on ``url`` (created lazily, so that opening is synchronous)."""

    def __init__(
        self, url: str, *, schema: str | None = None, pool_size: int = DEFAULT_POOL_SIZE
    ) -> None:
        self.url = libpq_url(url)
        self.schema = schema
        self._pool_size = pool_size
        self._pool: asyncpg.Pool | None = None
        self._leases: Leases | None = None
        self._opening: asyncio.Lock | None = None
        self._closed = False
        #: Called with the SQL of every statement run, when set before the pool opens.
        self.trace: Callable[[str], None] | None = None

    async def pool(self) -> asyncpg.Pool:
        """The pool (opened on the first call)."""
        if self._pool is not None:
            return self._pool
        if self._closed:
            raise RuntimeError("the database was closed")
        if self._opening is None:
            self._opening = asyncio.Lock()
        async with self._opening:
            if self._pool is None:
                settings = {"application_name": "smevbus"}
                if self.schema is not None:
                    settings["search_path"] = self.schema
                self._pool = await asyncpg.create_pool(
                    self.url,
                    min_size=1,
                    max_size=self._pool_size,
                    server_settings=settings,
                    init=None if self.trace is None else self._init,
                    reset=_keep_session,
                )
                # A quarter of the pool stays for its direct users (and overflow).
                self._leases = Leases(self._pool, keep=max(1, self._pool_size * 3 // 4))
        return self._pool

    # --- gateway.store.database.Database ------------------------------------------------

    def reading(self) -> AbstractAsyncContextManager[asyncpg.Connection]:
        """A leased connection (one per operation, never one per statement)."""
        if self._leases is not None:
            return self._leases.lease()
        return self._first_lease()

    @asynccontextmanager
    async def _first_lease(self) -> AsyncIterator[asyncpg.Connection]:
        await self.pool()
        assert self._leases is not None
        async with self._leases.lease() as connection:
            yield connection

    def writing(self) -> AbstractAsyncContextManager[asyncpg.Connection]:
        """A leased connection in autocommit: the stores' writes are one statement each."""
        return self.reading()

    def transaction(self) -> AbstractAsyncContextManager[asyncpg.Connection]:
        """A leased connection in a transaction, committed at the block's end (rolled
        back if it raises)."""
        return _Transaction(self.reading())

    async def fetch_one(self, connection: asyncpg.Connection, sql: str, *args: Any) -> Row | None:
        row: Row | None = await connection.fetchrow(sql, *args)
        return row

    async def fetch_all(self, connection: asyncpg.Connection, sql: str, *args: Any) -> list[Row]:
        return list(await connection.fetch(sql, *args))

    async def run(self, connection: asyncpg.Connection, sql: str, *args: Any) -> None:
        await connection.execute(sql, *args)

    def sql(self, text: str) -> str:
        return text

    def param(self, n: int) -> str:
        return f"${n}"

    def time(self, value: datetime) -> datetime:
        return value

    async def _init(self, connection: asyncpg.Connection) -> None:
        connection.add_query_logger(self._log)

    def _log(self, query: Any) -> None:
        if self.trace is not None:
            self.trace(query.query)

    async def migrate(self) -> None:
        await upgrade(self.url, schema=self.schema)

    async def revision(self) -> str | None:
        """The schema's Alembic revision, ``None`` if it was never migrated."""
        pool = await self.pool()
        try:
            value = await pool.fetchval("SELECT version_num FROM alembic_version")
        except asyncpg.UndefinedTableError:
            return None
        return None if value is None else str(value)

    async def execute(self, sql: str, *args: Any) -> None:
        """Run one statement (tests and tools; the stores use their own SQL)."""
        pool = await self.pool()
        await pool.execute(sql, *args)

    async def close(self) -> None:
        self._closed = True
        pool, self._pool = self._pool, None
        leases, self._leases = self._leases, None
        if leases is not None:
            await leases.close()
        if pool is not None:
            await pool.close()


class _Transaction:
    """``async with lease as connection, connection.transaction()`` as one class, not an
    async generator around the two: a generator context manager costs two more objects
    and the event loop's async-generator bookkeeping."""

    __slots__ = ("_lease", "_transaction")

    def __init__(self, lease: AbstractAsyncContextManager[asyncpg.Connection]) -> None:
        self._lease = lease

    async def __aenter__(self) -> asyncpg.Connection:
        connection = await self._lease.__aenter__()
        self._transaction = connection.transaction()
        try:
            await self._transaction.__aenter__()
        except BaseException as failed:
            await self._lease.__aexit__(type(failed), failed, failed.__traceback__)
            raise
        return connection

    async def __aexit__(
        self,
        kind: type[BaseException] | None,
        error: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        # As nested blocks: the lease ends with what the commit or rollback raised, if so.
        try:
            await self._transaction.__aexit__(kind, error, traceback)
        except BaseException as failed:
            await self._lease.__aexit__(type(failed), failed, failed.__traceback__)
            raise
        await self._lease.__aexit__(kind, error, traceback)
