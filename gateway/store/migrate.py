"""Running the journal's Alembic migrations from code.

``await upgrade(url_or_engine)`` is the only way the schema gets created, on
SQLite and PostgreSQL alike, and it is idempotent: at head it changes nothing.
"""

from __future__ import annotations

from pathlib import Path

from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import URL, Connection
from sqlalchemy.ext.asyncio import AsyncEngine

from gateway.store.engine import create_engine

MIGRATIONS_DIR = Path(__file__).parent / "migrations"


def alembic_config() -> Config:
    """An Alembic configuration for the journal that needs no ini file."""
    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS_DIR))
    return config


def head_revision() -> str:
    head = ScriptDirectory.from_config(alembic_config()).get_current_head()
    if head is None:  # pragma: no cover - the package always ships revisions
        raise RuntimeError(f"no migrations found in {MIGRATIONS_DIR}")
    return head


async def upgrade(
    target: AsyncEngine | str | URL, revision: str = "head", *, schema: str | None = None
) -> None:
    """Migrate the journal at ``target`` (an engine, or a URL with optional PG ``schema``)."""
    engine = target if isinstance(target, AsyncEngine) else create_engine(target, schema=schema)
    try:
        async with engine.begin() as connection:
            await connection.run_sync(_upgrade, revision)
    finally:
        if engine is not target:
            await engine.dispose()


async def current_revision(
    target: AsyncEngine | str | URL, *, schema: str | None = None
) -> str | None:
    """The revision the database at ``target`` is at, ``None`` if it was never migrated."""
    engine = target if isinstance(target, AsyncEngine) else create_engine(target, schema=schema)
    try:
        async with engine.connect() as connection:
            return await connection.run_sync(_current)
    finally:
        if engine is not target:
            await engine.dispose()


def _upgrade(connection: Connection, revision: str) -> None:
    config = alembic_config()
    config.attributes["connection"] = connection
    command.upgrade(config, revision)


def _current(connection: Connection) -> str | None:
    return MigrationContext.configure(connection).get_current_revision()
