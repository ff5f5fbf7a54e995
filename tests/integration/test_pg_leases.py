"""PostgreSQL connections lent per store operation (:mod:`gateway.store.pg_leases`)."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import asyncpg
import pytest

from gateway.store.pg import PgDatabase
from tests.integration import store_fixtures

postgres_url = store_fixtures.postgres_url

pytestmark = pytest.mark.integration


@pytest.fixture
async def database(postgres_url: str) -> AsyncIterator[PgDatabase]:
    db = PgDatabase(postgres_url, pool_size=4)  # keeps 3, one for the pool's direct users
    yield db
    await db.close()


async def backend_pid(db: PgDatabase) -> int:
    async with db.reading() as connection:
        return int(await connection.fetchval("SELECT pg_backend_pid()"))


async def test_operations_one_after_another_reuse_one_kept_connection(
    database: PgDatabase,
) -> None:
    pids = {await backend_pid(database) for _ in range(5)}
    assert len(pids) == 1
    pool = await database.pool()
    assert pool.get_idle_size() == 0  # kept out of the pool, not checked in and out


async def test_a_connection_left_in_doubt_goes_back_to_the_pool(database: PgDatabase) -> None:
    with pytest.raises(asyncpg.PostgresError):
        async with database.transaction() as connection:
            await connection.execute("SELECT 1/0")
    async with database.reading() as connection:  # no transaction left open, none aborted
        assert not connection.is_in_transaction()
        assert await connection.fetchval("SELECT 1") == 1


async def test_a_committed_transaction_keeps_its_connection(database: PgDatabase) -> None:
    first = await backend_pid(database)
    async with database.transaction() as connection:
        assert connection.is_in_transaction()
        await connection.execute("CREATE TEMP TABLE kept (a int) ON COMMIT DROP")
    assert await backend_pid(database) == first
    pool = await database.pool()
    assert pool.get_idle_size() == 0


async def test_a_failed_commit_sends_the_connection_back_to_the_pool(
    database: PgDatabase,
) -> None:
    await backend_pid(database)
    with pytest.raises(asyncpg.UniqueViolationError):
        async with database.transaction() as connection:
            await connection.execute(
                "CREATE TEMP TABLE twice (a int UNIQUE DEFERRABLE INITIALLY DEFERRED)"
                " ON COMMIT DROP; INSERT INTO twice VALUES (1), (1)"
            )  # refused only by the commit
    pool = await database.pool()
    assert pool.get_idle_size() == 1  # the lease ended with the commit's error
    async with database.reading() as connection:
        assert await connection.fetchval("SELECT 1") == 1


async def test_a_lost_connection_is_not_lent_again(database: PgDatabase) -> None:
    first = await backend_pid(database)
    async with database.reading() as connection:
        connection.terminate()
    assert await backend_pid(database) != first


async def test_past_the_kept_connections_leases_and_direct_users_still_get_theirs(
    database: PgDatabase,
) -> None:
    holding = asyncio.Event()
    release = asyncio.Event()
    held = 0

    async def hold() -> None:
        nonlocal held
        async with database.reading() as connection:
            await connection.fetchval("SELECT 1")
            held += 1
            if held == 4:
                holding.set()
            await release.wait()

    holders = [asyncio.create_task(hold()) for _ in range(4)]  # the whole pool
    await asyncio.wait_for(holding.wait(), timeout=10)
    release.set()
    await asyncio.gather(*holders)
    # Three kept, one back in the pool: a direct user and an operation both get one.
    pool = await database.pool()
    assert await asyncio.wait_for(pool.fetchval("SELECT 2"), timeout=10) == 2
    assert len({await backend_pid(database) for _ in range(3)}) == 1


async def test_closing_gives_every_connection_back(postgres_url: str) -> None:
    db = PgDatabase(postgres_url, pool_size=2)
    await backend_pid(db)
    await asyncio.wait_for(db.close(), timeout=10)  # would wait for a kept connection
