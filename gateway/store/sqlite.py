"""SQLite for the stores (aiosqlite): the embedded default, in a file or in memory.

One connection per :class:`SqliteDatabase`, shared by the journal and the
service-request store opened with it, and an asyncio lock that serializes their
operations (SQLite has one writer anyway). A write is ``BEGIN IMMEDIATE`` ...
``COMMIT``, so several processes on one file queue on SQLite's own lock (busy
timeout) instead of failing.

``sqlite://`` (or ``sqlite:///:memory:``) is a private in-memory database, shared
with the migrations through SQLite's shared cache, that lives until :meth:`close`.
A file database runs in WAL mode with ``synchronous=FULL`` (an acked message must
survive a power cut) and foreign keys on.
"""

from __future__ import annotations

import asyncio
import functools
import re
import sqlite3
import uuid
from collections.abc import AsyncIterator, Callable
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from datetime import datetime
from typing import Any
from urllib.parse import quote

import aiosqlite

from gateway.store.migrate import upgrade
from gateway.store.rows import Row, sqlite_time

BUSY_TIMEOUT_MS = 30_000
_SCHEMES = ("sqlite", "sqlite+aiosqlite", "sqlite+pysqlite")


def _dict_row(cursor: sqlite3.Cursor, row: tuple[Any, ...]) -> dict[str, Any]:
    return {column[0]: value for column, value in zip(cursor.description, row, strict=True)}


@functools.lru_cache(maxsize=256)
def _numbered(text: str) -> str:
    """PostgreSQL's ``$n`` parameters as SQLite's ``?n``."""
    return re.sub(r"\$(\d+)", r"?\1", text)


def sqlite_path(url: str) -> str | None:
    """The file a ``sqlite:///path`` URL names; ``None`` for an in-memory database."""
    scheme, sep, rest = url.partition("://")
    if not sep or scheme not in _SCHEMES:
        raise ValueError(f"not a SQLite URL: {scheme}://...")
    path = rest[1:] if rest.startswith("/") else rest
    path = path.split("?", 1)[0]
    return None if path in ("", ":memory:") else path


class SqliteDatabase:
    """One aiosqlite connection (opened on first use) and the lock that guards it."""

    def __init__(self, url: str) -> None:
        path = self._path = sqlite_path(url)
        self.memory = path is None
        if path is None:
            # A name of its own: two in-memory stores never share a database.
            self._uri = f"file:smevbus-{uuid.uuid4().hex}?mode=memory&cache=shared"
        else:
            self._uri = f"file:{quote(path)}"
        self.lock = asyncio.Lock()
        self._connection: aiosqlite.Connection | None = None
        self._closed = False
        #: Called (in the database's thread) with every statement run, when set before
        #: the connection opens.
        self.trace: Callable[[str], None] | None = None

    @property
    def migration_url(self) -> str:
        """The same database as SQLAlchemy (Alembic) names it."""
        if self._path is None:
            return f"sqlite+aiosqlite:///{self._uri}&uri=true"
        return f"sqlite+aiosqlite:///{self._path}"

    async def _connect(self) -> aiosqlite.Connection:
        if self._connection is not None:
            return self._connection
        if self._closed:
            raise RuntimeError("the database was closed")
        connection = await aiosqlite.connect(self._uri, uri=True, isolation_level=None)
        connection.row_factory = _dict_row  # type: ignore[assignment]
        await connection.execute(f"PRAGMA busy_timeout = {BUSY_TIMEOUT_MS}")
        await connection.execute("PRAGMA foreign_keys = ON")
        if not self.memory:
            await connection.execute("PRAGMA journal_mode = WAL")
            await connection.execute("PRAGMA synchronous = FULL")
        if self.trace is not None:
            await connection.set_trace_callback(self.trace)
        self._connection = connection
        return connection

    @asynccontextmanager
    async def reading(self) -> AsyncIterator[aiosqlite.Connection]:
        """The connection, for statements that each stand alone."""
        async with self.lock:
            yield await self._connect()

    @asynccontextmanager
    async def writing(self) -> AsyncIterator[aiosqlite.Connection]:
        """The connection inside one write transaction (committed unless it raises)."""
        async with self.lock:
            connection = await self._connect()
            await connection.execute("BEGIN IMMEDIATE")
            try:
                yield connection
            except BaseException:
                await connection.execute("ROLLBACK")
                raise
            await connection.execute("COMMIT")

    def transaction(self) -> AbstractAsyncContextManager[aiosqlite.Connection]:
        """As :meth:`writing`: every write is a transaction."""
        return self.writing()

    async def fetch_one(self, connection: aiosqlite.Connection, sql: str, *args: Any) -> Row | None:
        cursor = await connection.execute(sql, args)
        try:
            row: Row | None = await cursor.fetchone()  # type: ignore[assignment]
        finally:
            await cursor.close()
        return row

    async def fetch_all(self, connection: aiosqlite.Connection, sql: str, *args: Any) -> list[Row]:
        return list(await connection.execute_fetchall(sql, args))  # type: ignore[arg-type]

    async def run(self, connection: aiosqlite.Connection, sql: str, *args: Any) -> None:
        await connection.execute(sql, args)

    def sql(self, text: str) -> str:
        return _numbered(text)

    def param(self, n: int) -> str:
        return "?"

    def time(self, value: datetime) -> str:
        return sqlite_time(value)

    async def migrate(self) -> None:
        async with self.lock:
            await self._connect()  # an in-memory database lives as long as this connection
            await upgrade(self.migration_url)

    async def revision(self) -> str | None:
        """The schema's Alembic revision, ``None`` if it was never migrated."""
        async with self.reading() as connection:
            try:
                cursor = await connection.execute("SELECT version_num FROM alembic_version")
            except sqlite3.OperationalError:
                return None
            row = await cursor.fetchone()
        return None if row is None else str(row["version_num"])

    async def execute(self, sql: str, *args: Any) -> None:
        """Run one statement in its own transaction (tests and tools)."""
        async with self.writing() as connection:
            await connection.execute(sql, args)

    async def close(self) -> None:
        self._closed = True
        connection, self._connection = self._connection, None
        if connection is not None:
            await connection.close()
