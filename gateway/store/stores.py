"""Opening the stores from a database URL: the one place a backend is chosen."""

from __future__ import annotations

from dataclasses import dataclass
from types import TracebackType
from typing import Self

from gateway.store.base import Journal, ServiceRequests
from gateway.store.journal_pg import PgJournal
from gateway.store.journal_sqlite import SqliteJournal
from gateway.store.pg import PgDatabase
from gateway.store.sqlite import SqliteDatabase


@dataclass(frozen=True)
class Stores:
    """The journal and the service-request store on one database (one pool or
    connection); closing either closes both."""

    journal: Journal
    service_requests: ServiceRequests
    database: PgDatabase | SqliteDatabase

    async def migrate(self) -> None:
        await self.database.migrate()

    async def close(self) -> None:
        await self.database.close()

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.close()


def open_stores(url: str, *, schema: str | None = None) -> Stores:
    """The stores on ``url``: ``postgresql://...`` (asyncpg; ``schema`` puts the tables
    in that schema) or ``sqlite:///path`` / ``sqlite://`` (aiosqlite, in memory).
    Nothing connects before the first operation; call ``migrate()`` first."""
    scheme = url.partition("://")[0].split("+")[0]
    journal: PgJournal | SqliteJournal
    if scheme in ("postgresql", "postgres"):
        pg = PgDatabase(url, schema=schema)
        journal = PgJournal(pg)
        return Stores(journal, journal.service_requests(), pg)
    if scheme == "sqlite":
        if schema is not None:
            raise ValueError("schema is only supported on PostgreSQL")
        lite = SqliteDatabase(url)
        journal = SqliteJournal(lite)
        return Stores(journal, journal.service_requests(), lite)
    raise ValueError(
        f"unsupported journal database {scheme!r}: use sqlite:///path or postgresql://..."
    )
