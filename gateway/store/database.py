"""What the stores ask of a database: connections, rows, and how it takes parameters.

:class:`~gateway.store.pg.PgDatabase` (asyncpg) and
:class:`~gateway.store.sqlite.SqliteDatabase` (aiosqlite) each implement it, so the
operations of :mod:`gateway.store.journal_flow` and :mod:`gateway.store.requests_flow`
are written once; a backend's store holds only its SQL and what its driver needs done
differently.
"""

from __future__ import annotations

from contextlib import AbstractAsyncContextManager
from datetime import datetime
from typing import Any, Protocol, TypeVar

from gateway.store.rows import Row

C = TypeVar("C")


class Database(Protocol[C]):
    """A database whose connections are ``C``."""

    def reading(self) -> AbstractAsyncContextManager[C]:
        """A connection for statements that each stand alone."""
        ...

    def writing(self) -> AbstractAsyncContextManager[C]:
        """A connection for one write: a statement that is atomic alone (PostgreSQL:
        autocommit), or the few statements of one transaction (SQLite)."""
        ...

    def transaction(self) -> AbstractAsyncContextManager[C]:
        """A connection inside one transaction (committed unless the block raises)."""
        ...

    async def fetch_one(self, connection: C, sql: str, *args: Any) -> Row | None: ...

    async def fetch_all(self, connection: C, sql: str, *args: Any) -> list[Row]: ...

    async def run(self, connection: C, sql: str, *args: Any) -> None: ...

    def sql(self, text: str) -> str:
        """``text``, whose parameters are written ``$1``, ``$2``, ..., in this database's
        form (the stores write SQL both databases take that way once)."""
        ...

    def param(self, n: int) -> str:
        """How the SQL names the ``n``-th parameter (``$n`` or ``?``)."""
        ...

    def time(self, value: datetime) -> Any:
        """An aware datetime as the database takes it as a parameter."""
        ...

    async def migrate(self) -> None: ...

    async def close(self) -> None: ...


def time_or_none(database: Database[Any], value: datetime | None) -> Any:
    return None if value is None else database.time(value)
