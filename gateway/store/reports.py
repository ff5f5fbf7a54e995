"""Read-only report queries (KPIs, the ops console's rates) on the journal's own database.

:func:`report_database` gives a :class:`~gateway.ops.kpi_queries.KpiDatabase` on the
pool (PostgreSQL) or connection (SQLite) a journal already holds, so that reports read
the very database the bus writes, an in-memory SQLite one included, without a second
driver. Statements take ``:name`` parameters; datetimes are aware and stored as the
journal stores them.

On SQLite a report waits for the one connection like any store operation: keep its
statements to aggregates over indexed ranges.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from datetime import datetime
from typing import Any

from gateway.store.base import Journal
from gateway.store.journal_pg import PgJournal
from gateway.store.journal_sqlite import SqliteJournal
from gateway.store.pg import PgDatabase
from gateway.store.rows import sqlite_time
from gateway.store.sqlite import SqliteDatabase

Params = Mapping[str, datetime | str]

#: A ``:name`` parameter, not a PostgreSQL ``::type`` cast.
_PARAM = re.compile(r"(?<![:\w]):([A-Za-z_]\w*)")


def numbered(sql: str) -> tuple[str, list[str]]:
    """``sql`` with its ``:name`` parameters as ``$1, $2, ...`` (each name one number),
    and the names in number order."""
    names: list[str] = []

    def number(match: re.Match[str]) -> str:
        name = match.group(1)
        if name not in names:
            names.append(name)
        return f"${names.index(name) + 1}"

    return _PARAM.sub(number, sql), names


class PgReports:
    def __init__(self, database: PgDatabase) -> None:
        self._database = database

    @property
    def dialect(self) -> str:
        return "postgresql"

    async def fetch(self, sql: str, params: Params) -> Sequence[Mapping[str, Any]]:
        statement, names = numbered(sql)
        pool = await self._database.pool()
        rows = await pool.fetch(statement, *(params[name] for name in names))
        return [dict(row) for row in rows]


class SqliteReports:
    def __init__(self, database: SqliteDatabase) -> None:
        self._database = database

    @property
    def dialect(self) -> str:
        return "sqlite"

    async def fetch(self, sql: str, params: Params) -> Sequence[Mapping[str, Any]]:
        values = {
            name: sqlite_time(value) if isinstance(value, datetime) else value
            for name, value in params.items()
        }
        async with self._database.reading() as connection:
            rows = await connection.execute_fetchall(sql, values)
        return [dict(row) for row in rows]


def report_database(journal: Journal) -> PgReports | SqliteReports:
    """Report queries on ``journal``'s database."""
    if isinstance(journal, PgJournal):
        return PgReports(journal.database)
    if isinstance(journal, SqliteJournal):
        return SqliteReports(journal.database)
    raise TypeError(f"no report queries on a {type(journal).__name__}")
