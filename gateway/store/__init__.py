"""The message journal: every accepted message, its state, and each move of that state.

``SqlStore`` implements the ``Store`` protocol on SQLite (embedded default, also
in-memory) and PostgreSQL; Alembic migrations (``await store.migrate()``) are the
only way its schema is created.
"""

from gateway.core.envelope import MessageKind
from gateway.store.base import DEFAULT_PAGE_SIZE, MAX_PAGE_SIZE, Store, TransitionConflict
from gateway.store.engine import async_url, create_engine
from gateway.store.journal import SqlStore
from gateway.store.migrate import current_revision, head_revision, upgrade
from gateway.store.records import (
    AcceptOutcome,
    AcceptResult,
    MessageRecord,
    NewMessage,
    Page,
    TransitionRecord,
)

__all__ = [
    "DEFAULT_PAGE_SIZE",
    "MAX_PAGE_SIZE",
    "AcceptOutcome",
    "AcceptResult",
    "MessageKind",
    "MessageRecord",
    "NewMessage",
    "Page",
    "SqlStore",
    "Store",
    "TransitionConflict",
    "TransitionRecord",
    "async_url",
    "create_engine",
    "current_revision",
    "head_revision",
    "upgrade",
]
