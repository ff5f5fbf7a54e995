"""Fixtures that run the one journal suite on SQLite and on PostgreSQL.

* ``sqlite``: a fresh database file per test (WAL mode, as in production).
* ``postgresql``: a fresh schema per test (``smevbus_test_<run>_<n>``, selected via
  ``search_path``), dropped afterwards; any schema of this run still left is dropped
  at the end of the session. The server is ``$SMEVBUS_TEST_POSTGRES_URL``, by default
  ``postgresql://postgres@127.0.0.1:5432/test``. If it cannot be reached the cases
  are skipped, except under ``CI=true``, where that is a failure.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import os
import uuid
from collections.abc import AsyncIterator, Callable, Coroutine, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

import asyncpg  # type: ignore[import-untyped]
import pytest
from sqlalchemy import make_url
from sqlalchemy.ext.asyncio import AsyncConnection

from gateway.core.clock import FakeClock
from gateway.store import Journal, Stores, open_journal, open_stores
from gateway.store.engine import create_engine

T = TypeVar("T")

DEFAULT_PG_URL = "postgresql://postgres@127.0.0.1:5432/test"
RUN_PREFIX = f"smevbus_test_{uuid.uuid4().hex[:8]}"
_schema_numbers = itertools.count(1)


@dataclass(frozen=True)
class Backend:
    """Where a test's journal lives; ``open()`` gives another, independent store on it."""

    name: str
    url: str
    schema: str | None = None

    def open(self) -> Journal:
        return open_journal(self.url, schema=self.schema)

    def stores(self) -> Stores:
        return open_stores(self.url, schema=self.schema)

    @contextlib.asynccontextmanager
    async def sql(self) -> AsyncIterator[AsyncConnection]:
        """A SQLAlchemy connection (in a transaction, committed) to look at the tables
        behind the stores' backs, or change them."""
        engine = create_engine(self.url, schema=self.schema)
        try:
            async with engine.begin() as connection:
                yield connection
        finally:
            await engine.dispose()


def _run_in_thread(make: Callable[[], Coroutine[Any, Any, T]]) -> T:
    """Run a coroutine to completion on its own loop, away from pytest-asyncio's loops."""
    with ThreadPoolExecutor(max_workers=1) as pool:
        return pool.submit(asyncio.run, make()).result()


def _libpq_url(url: str) -> str:
    """``url`` as asyncpg itself takes it (no ``+asyncpg`` driver suffix)."""
    return make_url(url).set(drivername="postgresql").render_as_string(hide_password=False)


async def _ping(url: str) -> None:
    connection = await asyncpg.connect(url, timeout=5)
    await connection.close()


async def _drop_run_schemas(url: str) -> None:
    connection = await asyncpg.connect(url, timeout=5)
    try:
        names = await connection.fetch(
            "SELECT nspname FROM pg_namespace WHERE nspname LIKE $1", RUN_PREFIX + "%"
        )
        for row in names:
            await connection.execute(f'DROP SCHEMA IF EXISTS "{row["nspname"]}" CASCADE')
    finally:
        await connection.close()


@pytest.fixture(scope="session")
def postgres_url() -> Iterator[str]:
    url = _libpq_url(os.environ.get("SMEVBUS_TEST_POSTGRES_URL", DEFAULT_PG_URL))
    try:
        _run_in_thread(lambda: _ping(url))
    except (TimeoutError, OSError, asyncpg.PostgresError) as exc:
        message = f"PostgreSQL at {url} is unreachable: {exc!r}"
        if os.environ.get("CI", "").lower() == "true":
            pytest.fail(message + " (CI=true: PostgreSQL cases must run)")
        pytest.skip(message)
    yield url
    _run_in_thread(lambda: _drop_run_schemas(url))


@pytest.fixture(
    params=[
        pytest.param("sqlite"),
        pytest.param("postgresql", marks=pytest.mark.integration),
    ]
)
async def backend(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[Backend]:
    if request.param == "sqlite":
        yield Backend("sqlite", f"sqlite:///{tmp_path / 'journal.db'}")
        return
    url: str = request.getfixturevalue("postgres_url")
    schema = f"{RUN_PREFIX}_{next(_schema_numbers)}"
    connection = await asyncpg.connect(url, timeout=5)
    try:
        await connection.execute(f'CREATE SCHEMA "{schema}"')
        yield Backend("postgresql", url, schema)
    finally:
        await connection.execute(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE')
        await connection.close()


@pytest.fixture
async def store(backend: Backend) -> AsyncIterator[Journal]:
    """A migrated journal on ``backend``."""
    journal = backend.open()
    await journal.migrate()
    try:
        yield journal
    finally:
        await journal.close()


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()
