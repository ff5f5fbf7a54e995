"""The message journal and the service-request store.

:func:`open_stores` opens both on one database: PostgreSQL on asyncpg directly
(production) or SQLite on aiosqlite (embedded default, also in-memory), behind the
protocols of :mod:`gateway.store.base`. Alembic migrations (``await
stores.migrate()``) are the only way their schema is created.
"""

from gateway.core.envelope import MessageKind
from gateway.store.base import (
    DEFAULT_PAGE_SIZE,
    MAX_PAGE_SIZE,
    Journal,
    ServiceRequests,
    Store,
    TransitionConflict,
)
from gateway.store.journal import SqlStore, open_journal
from gateway.store.migrate import current_revision, head_revision, upgrade
from gateway.store.records import (
    AcceptOutcome,
    AcceptResult,
    MessageRecord,
    NewMessage,
    Page,
    TransitionRecord,
)
from gateway.store.stores import Stores, open_stores

__all__ = [
    "DEFAULT_PAGE_SIZE",
    "MAX_PAGE_SIZE",
    "AcceptOutcome",
    "AcceptResult",
    "Journal",
    "MessageKind",
    "MessageRecord",
    "NewMessage",
    "Page",
    "ServiceRequests",
    "SqlStore",
    "Store",
    "Stores",
    "TransitionConflict",
    "TransitionRecord",
    "current_revision",
    "head_revision",
    "open_journal",
    "open_stores",
    "upgrade",
]
