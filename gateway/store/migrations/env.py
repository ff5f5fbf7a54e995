"""Alembic environment of the journal (online migrations only).

Called two ways:

* by :func:`gateway.store.migrate.upgrade`, which hands in an open connection
  (already inside a transaction) through ``config.attributes["connection"]``;
* by the ``alembic`` command line, which names the database with ``-x url=...`` or
  ``sqlalchemy.url`` (and a PostgreSQL schema with ``-x schema=...``); a plain URL
  is mapped to its async driver.

On PostgreSQL a transaction-scoped advisory lock serializes concurrent upgrades
(two gateways starting at once); SQLite's write lock does the same there.
"""

from __future__ import annotations

import asyncio

from alembic import context
from sqlalchemy import Connection, text

from gateway.store.engine import create_engine
from gateway.store.schema import metadata

# An arbitrary constant, the same in every process that migrates this journal.
_PG_MIGRATION_LOCK = 0x736D657662757331


def _run_migrations(connection: Connection) -> None:
    if connection.dialect.name == "postgresql":
        connection.execute(text("SELECT pg_advisory_xact_lock(:key)"), {"key": _PG_MIGRATION_LOCK})
    context.configure(
        connection=connection,
        target_metadata=metadata,
        render_as_batch=connection.dialect.name == "sqlite",
        compare_type=True,
    )
    with context.begin_transaction():
        context.run_migrations()


async def _run_from_url(url: str, schema: str | None) -> None:
    engine = create_engine(url, schema=schema)
    try:
        async with engine.begin() as connection:
            await connection.run_sync(_run_migrations)
    finally:
        await engine.dispose()


def _main() -> None:
    if context.is_offline_mode():
        raise RuntimeError("offline (--sql) migrations are not supported for the journal")
    connection = context.config.attributes.get("connection")
    if connection is not None:
        _run_migrations(connection)
        return
    x_args = context.get_x_argument(as_dictionary=True)
    url = x_args.get("url") or context.config.get_main_option("sqlalchemy.url")
    if not url:
        raise RuntimeError("no database: pass -x url=... or set sqlalchemy.url")
    asyncio.run(_run_from_url(url, x_args.get("schema")))


_main()
