"""SQLAlchemy engines for the migrations (Alembic) only: the stores themselves run on
asyncpg and aiosqlite directly (:mod:`gateway.store.pg`, :mod:`gateway.store.sqlite`).

``sqlite:///path`` and ``postgresql://...`` are mapped to the aiosqlite and asyncpg
drivers. A file SQLite database runs in WAL mode with foreign keys on; an in-memory
one (``sqlite://``) lives on one shared connection (``StaticPool``) for as long as the
engine does. ``schema`` (PostgreSQL only) puts every table in that schema through
the connection's ``search_path``.
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import URL, event, make_url
from sqlalchemy.ext.asyncio import AsyncEngine, create_async_engine
from sqlalchemy.pool import StaticPool

_ASYNC_DRIVERS = {"sqlite": "sqlite+aiosqlite", "postgresql": "postgresql+asyncpg"}
_ACCEPTED = frozenset(_ASYNC_DRIVERS.values())
_ALIASES = {"postgres": "postgresql", "sqlite+pysqlite": "sqlite"}
SQLITE_BUSY_TIMEOUT_S = 30.0


def async_url(url: str | URL) -> URL:
    """``url`` with its async driver: ``postgresql://`` -> ``postgresql+asyncpg://`` etc.

    URLs that already name ``aiosqlite`` or ``asyncpg`` pass through; any other
    driver or database raises ``ValueError``.
    """
    parsed = make_url(url)
    name = parsed.drivername
    if name in _ACCEPTED:
        return parsed
    base = _ALIASES.get(name, name)
    if base in _ASYNC_DRIVERS:
        return parsed.set(drivername=_ASYNC_DRIVERS[base])
    raise ValueError(
        f"unsupported journal database {name!r}: use sqlite:///path or postgresql://..."
    )


def is_sqlite_memory(url: URL) -> bool:
    database = url.database or ""
    return url.get_backend_name() == "sqlite" and (
        database in ("", ":memory:")
        or "mode=memory" in database
        or url.query.get("mode") == "memory"
    )


#: PostgreSQL connections kept open per engine. Every concurrent journal operation
#: holds one; overflow connections are opened and closed per operation, which on
#: asyncpg costs more than the operation itself, so the pool must cover the usual
#: concurrency of a gateway process.
DEFAULT_POOL_SIZE = 20


def create_engine(
    url: str | URL,
    *,
    schema: str | None = None,
    echo: bool = False,
    pool_size: int = DEFAULT_POOL_SIZE,
) -> AsyncEngine:
    """An async engine for the journal at ``url`` (see the module docstring)."""
    target = async_url(url)
    # A failed statement's error names its SQL, never its values (message content,
    # personal data): the error may end up in a log.
    kwargs: dict[str, Any] = {"echo": echo, "hide_parameters": True}
    if target.get_backend_name() == "sqlite":
        if schema is not None:
            raise ValueError("schema is only supported on PostgreSQL")
        kwargs["connect_args"] = {"timeout": SQLITE_BUSY_TIMEOUT_S}
        if is_sqlite_memory(target):
            kwargs["poolclass"] = StaticPool
        engine = create_async_engine(target, **kwargs)
        _configure_sqlite(engine, wal=not is_sqlite_memory(target))
        return engine
    if schema is not None:
        kwargs["connect_args"] = {"server_settings": {"search_path": schema}}
    # No pre-ping: on asyncpg it costs three round trips per checkout, more than most
    # journal operations themselves. A connection the server dropped fails its statement,
    # SQLAlchemy invalidates the pool, and the caller's operation fails with ``internal``
    # (transient): the client retries and gets a fresh connection.
    kwargs["pool_recycle"] = 1800
    kwargs["pool_size"] = pool_size
    kwargs["max_overflow"] = pool_size
    return create_async_engine(target, **kwargs)


def _configure_sqlite(engine: AsyncEngine, *, wal: bool) -> None:
    @event.listens_for(engine.sync_engine, "connect")
    def _on_connect(dbapi_connection: Any, _record: Any) -> None:
        cursor = dbapi_connection.cursor()
        try:
            cursor.execute("PRAGMA foreign_keys=ON")
            if wal:
                cursor.execute("PRAGMA journal_mode=WAL")
                # FULL, not WAL's usual NORMAL: an acked message must survive a power cut.
                cursor.execute("PRAGMA synchronous=FULL")
        finally:
            cursor.close()
