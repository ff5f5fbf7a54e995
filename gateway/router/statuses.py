"""GetStatus as 1.1 has it: the caller's next status notice, derived from the journal.

A notice is one change of the 1.1 code (:mod:`gateway.core.interaction_status`) of a
message the caller sent, read from the message's journal history. Each notice is handed
out once: the journal's replay memory (:meth:`~gateway.store.base.Store.remember`, shared
by every gateway process) records it as served, so two pollers never get the same one.
A caller sees the notices of one message in order, its messages oldest first.

Only messages created within :data:`STATUS_WINDOW` are looked at. The simple version
costs one ``remember`` per notice already served on every poll, so it suits the few
hundred messages a participant has in flight; a status table with a cursor per
participant in the store is the step up (docs/smev3-compatibility.md, section 2).
"""

from __future__ import annotations

import hashlib
import uuid
from collections.abc import Iterator
from datetime import timedelta

from gateway.core.interaction_status import interaction_status
from gateway.core.lifecycle import MessageState
from gateway.core.registry import Participant
from gateway.router.context import BusContext
from gateway.store.base import MAX_PAGE_SIZE, Store
from gateway.store.records import MessageRecord, TransitionRecord
from gateway.xml.messages import StatusNotice

STATUS_WINDOW = timedelta(days=1)
"""How long after a message is created its status changes are reported."""

_FAILURES = (
    MessageState.FAILED,
    MessageState.REJECTED,
    MessageState.EXPIRED,
    MessageState.PURGED,
)


def notices(
    record: MessageRecord, history: list[TransitionRecord]
) -> Iterator[tuple[int, StatusNotice]]:
    """(transition id, notice) for each change of the 1.1 code in ``history``."""
    shown = None
    for step in history:
        code = interaction_status(record.kind, step.to_state)
        if code == shown:
            continue
        shown = code
        words = f"{step.to_state}" + (f": {step.reason}" if step.reason else "")
        failed = step.to_state in _FAILURES
        yield (
            step.id,
            StatusNotice(
                original_message_id=uuid.UUID(record.message_id),
                category=str(code),
                details=f"{record.kind} {words}",
                fault_code=str(step.to_state).lower() if failed else None,
                fault_description=step.reason if failed else None,
            ),
        )


class StatusFeed:
    def __init__(self, ctx: BusContext, store: Store) -> None:
        self.ctx = ctx
        self.store = store

    async def next(self, caller: Participant) -> StatusNotice | None:
        """The caller's next status notice not served before, or None."""
        now = self.ctx.clock.now()
        after: str | None = None
        while True:
            page = await self.store.find(
                sender=caller.mnemonic, since=now - STATUS_WINDOW, limit=MAX_PAGE_SIZE, after=after
            )
            for record in page.items:
                history = await self.store.history(record.message_id)
                for transition_id, notice in notices(record, history):
                    key = hashlib.sha256(
                        f"status\n{record.message_id}\n{transition_id}".encode()
                    ).hexdigest()
                    if await self.store.remember(
                        key,
                        caller.mnemonic,
                        expires_at=record.created_at + STATUS_WINDOW + timedelta(hours=1),
                        now=now,
                    ):
                        return notice
            if page.next_cursor is None:
                return None
            after = page.next_cursor
