"""A message's journal state and history, read straight from the journal.

1.1's GetStatus takes status notices, it does not answer "where is message X"; tests
that follow one message through its lifecycle read the journal (as the REST API's
``GET /api/v1/messages/{id}`` does).
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import datetime

from gateway.store import open_journal
from gateway.store.base import Store


@dataclass(frozen=True)
class Transition:
    state: str
    timestamp: datetime
    reason: str | None = None


@dataclass(frozen=True)
class Report:
    message_id: uuid.UUID
    status: str
    history: tuple[Transition, ...] = ()


async def journal_report(store: Store, message_id: uuid.UUID | str) -> Report:
    record = await store.get(str(message_id))
    history = await store.history(str(message_id))
    return Report(
        uuid.UUID(record.message_id),
        str(record.state),
        tuple(Transition(str(t.to_state), t.at, t.reason) for t in history),
    )


async def journal_report_at(database_url: str, message_id: uuid.UUID | str) -> Report:
    """The same, from the journal database of a gateway running as a process."""
    store = open_journal(database_url)
    try:
        return await journal_report(store, message_id)
    finally:
        await store.close()
