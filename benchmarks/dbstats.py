"""Transactions as PostgreSQL counts them (``pg_stat_database``), for the benchmarks.

A backend reports its counts at most once a second while busy, and an idle one
within ``PGSTAT_IDLE_INTERVAL`` (10 s): :func:`settled_transactions` waits that long
so that every transaction of the phase before it is in the figure.
"""

from __future__ import annotations

import asyncio
import time

import asyncpg  # type: ignore[import-untyped]

#: How long an idle backend may keep its counts to itself, plus a margin.
STATS_DELAY_S = 11.5


async def transactions(database_url: str) -> int:
    """``xact_commit + xact_rollback`` of the database ``database_url`` names, read from
    the server's maintenance database (so the reading adds nothing to it)."""
    base, name = database_url.rsplit("/", 1)
    connection = await asyncpg.connect(base + "/postgres")
    try:
        await connection.execute("SELECT pg_stat_force_next_flush()")
        count = await connection.fetchval(
            "SELECT xact_commit + xact_rollback FROM pg_stat_database WHERE datname = $1", name
        )
    finally:
        await connection.close()
    return int(count or 0)


def settled_transactions(database_url: str) -> int:
    """:func:`transactions` once every backend has reported what it did so far."""
    time.sleep(STATS_DELAY_S)
    return asyncio.run(transactions(database_url))


async def settled(database_url: str) -> int:
    """:func:`settled_transactions` inside a running event loop."""
    await asyncio.sleep(STATS_DELAY_S)
    return await transactions(database_url)
