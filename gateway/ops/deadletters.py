"""Dead-letter tools for operators: list, show, replay and purge a participant's DLQ.

``smevbus dlq list|show|replay`` and the ops console (:mod:`gateway.ops.console`:
``/ui``, ``/api/v1/ops``, ``smevbus dlq purge``) are thin skins over
:class:`DeadLetterDesk`, which takes an open transport and journal so tests drive it
without either. Replay and purge name the operator as the journal's actor.

Replay is journal-first: each message is moved ``DEAD_LETTERED -> QUEUED`` ("replayed
by operator") and only then put back in its queue, so a provider that pulls it at
once finds the journal ready. Only messages the journal shows as ``DEAD_LETTERED``
are replayed; the others are skipped with the reason (an ``EXPIRED`` one would only
expire again; one the bus has not journaled yet means its router is not running).
If the transport fails, the journal is put back to ``DEAD_LETTERED``.

Purge is journal-first too: each dead letter the journal has ``DEAD_LETTERED`` or
``EXPIRED`` is moved to ``PURGED`` ("purged from the dead-letter queue by operator"),
then every purged one is dropped from the queue. A purge the transport failed is
finished by the next one: letters the journal already has ``PURGED`` are dropped
without a second journal entry. Others (unknown to the journal, or in another state:
the router has not journaled the dead-lettering yet) are left, with the reason.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Collection
from contextlib import asynccontextmanager
from dataclasses import dataclass
from datetime import datetime

from gateway.config import Settings
from gateway.core.clock import Clock, SystemClock
from gateway.core.copies import why_not_purgeable, why_not_replayable
from gateway.core.errors import NotFound
from gateway.core.lifecycle import IllegalTransition, MessageState
from gateway.router.deadletters import OPERATOR_ACTOR, DeadLetterJournal
from gateway.store.base import Store
from gateway.store.journal import open_journal
from gateway.store.records import MessageRecord, TransitionRecord
from gateway.transport.base import (
    HEADER_SENDER,
    HEADER_TYPE,
    DeadLetter,
    DeadLetterReason,
    Direction,
    Transport,
)
from gateway.transport.opening import open_transport

#: How many dead letters ``show`` and ``replay`` look through in one queue.
SCAN_LIMIT = 10_000


@dataclass(frozen=True, slots=True)
class DeadLetterSummary:
    direction: Direction
    participant: str
    message_id: str
    reason: DeadLetterReason
    detail: str
    message_type: str | None
    sender: str | None
    #: Where the journal has the message (``None``: not a message the journal knows).
    journal_state: MessageState | None
    expires_at: datetime | None


@dataclass(frozen=True, slots=True)
class DeadLetterDetail:
    summary: DeadLetterSummary
    headers: dict[str, str]
    #: The message as queued: the SOAP body the sender sent.
    xml: bytes
    history: tuple[TransitionRecord, ...]


@dataclass(frozen=True, slots=True)
class ReplayReport:
    replayed: tuple[str, ...]
    #: ``(message_id, why)`` for each wanted message left where it was.
    skipped: tuple[tuple[str, str], ...]


@dataclass(frozen=True, slots=True)
class PurgeReport:
    purged: tuple[str, ...]
    #: ``(message_id, why)`` for each dead letter left in the queue.
    skipped: tuple[tuple[str, str], ...]


class DeadLetterDesk:
    def __init__(self, transport: Transport, store: Store, clock: Clock) -> None:
        self.transport = transport
        self.store = store
        self.journal = DeadLetterJournal(store, clock)

    async def listing(
        self, direction: Direction, participant: str, *, limit: int = 100
    ) -> list[DeadLetterSummary]:
        """Up to ``limit`` dead letters of the queue, oldest first, left in place."""
        letters = await self.transport.dead_letters(direction, participant, limit=limit)
        return [await self._summary(direction, participant, letter) for letter in letters]

    async def show(
        self, direction: Direction, participant: str, message_id: str
    ) -> DeadLetterDetail:
        """One dead letter with its XML and journal history; ``NotFound`` if not in the DLQ."""
        letter = await self._find(direction, participant, message_id)
        record = await self._record(message_id)
        history = tuple(await self.store.history(message_id)) if record is not None else ()
        return DeadLetterDetail(
            summary=_summarize(direction, participant, letter, record),
            headers=dict(letter.message.headers),
            xml=letter.message.body,
            history=history,
        )

    async def replay(
        self,
        direction: Direction,
        participant: str,
        message_ids: Collection[str] | None = None,
        *,
        operator: str = OPERATOR_ACTOR,
    ) -> ReplayReport:
        """Put dead letters (these ids, or all) back in their queue, journaled as done by
        ``operator``; see the module docstring."""
        letters = await self.transport.dead_letters(direction, participant, limit=SCAN_LIMIT)
        present = list(dict.fromkeys(letter.message.message_id for letter in letters))
        skipped = [
            (mid, "not in the dead-letter queue") for mid in message_ids or () if mid not in present
        ]
        wanted = [mid for mid in present if message_ids is None or mid in message_ids]
        journaled: list[str] = []
        for message_id in wanted:
            why = await self._why_not_replayable(message_id)
            if why is None:
                try:
                    await self.journal.replayed(message_id, operator)
                    journaled.append(message_id)
                    continue
                except IllegalTransition:
                    why = "moved by someone else meanwhile"
            skipped.append((message_id, why))
        if journaled:
            try:
                await self.transport.replay(direction, participant, journaled)
            except Exception as exc:
                for message_id in journaled:
                    await self.journal.replay_failed(message_id, repr(exc), operator)
                raise
        return ReplayReport(tuple(journaled), tuple(skipped))

    async def purge(self, direction: Direction, participant: str, *, operator: str) -> PurgeReport:
        """Drop the queue's dead letters for good, journaled as done by ``operator``;
        see the module docstring."""
        letters = await self.transport.dead_letters(direction, participant, limit=SCAN_LIMIT)
        purged: list[str] = []
        skipped: list[tuple[str, str]] = []
        for message_id in dict.fromkeys(letter.message.message_id for letter in letters):
            why = await self._journal_purge(message_id, operator)
            if why is None:
                purged.append(message_id)
            else:
                skipped.append((message_id, why))
        if purged:
            await self.transport.purge(direction, participant, purged)
        return PurgeReport(tuple(purged), tuple(skipped))

    async def _journal_purge(self, message_id: str, operator: str) -> str | None:
        """Journal the purge; None once the journal has the message ``PURGED`` (now or
        before), else why the letter stays."""
        record = await self._record(message_id)
        if record is None:
            return "not in the journal"
        why = why_not_purgeable(record.state)
        if why is not None or record.state is MessageState.PURGED:
            return why
        try:
            await self.journal.purged(message_id, operator)
        except IllegalTransition:
            return "moved by someone else meanwhile"
        return None

    async def _why_not_replayable(self, message_id: str) -> str | None:
        record = await self._record(message_id)
        if record is None:
            return "not in the journal"
        return why_not_replayable(record.state)

    async def _find(self, direction: Direction, participant: str, message_id: str) -> DeadLetter:
        for letter in await self.transport.dead_letters(direction, participant, limit=SCAN_LIMIT):
            if letter.message.message_id == message_id:
                return letter
        raise NotFound(
            f"no dead letter {message_id} in the {direction} DLQ of {participant}",
            message_id=message_id,
        )

    async def _summary(
        self, direction: Direction, participant: str, letter: DeadLetter
    ) -> DeadLetterSummary:
        record = await self._record(letter.message.message_id)
        return _summarize(direction, participant, letter, record)

    async def _record(self, message_id: str) -> MessageRecord | None:
        try:
            return await self.store.get(message_id)
        except NotFound:
            return None


def _summarize(
    direction: Direction, participant: str, letter: DeadLetter, record: MessageRecord | None
) -> DeadLetterSummary:
    headers = letter.message.headers
    return DeadLetterSummary(
        direction=direction,
        participant=participant,
        message_id=letter.message.message_id,
        reason=letter.reason,
        detail=letter.detail,
        message_type=headers.get(HEADER_TYPE, record.message_type if record else None),
        sender=headers.get(HEADER_SENDER, record.sender if record else None),
        journal_state=record.state if record else None,
        expires_at=letter.message.expires_at,
    )


@asynccontextmanager
async def open_desk(
    settings: Settings, participants: Collection[str], clock: Clock | None = None
) -> AsyncIterator[DeadLetterDesk]:
    """A desk on the transport and journal ``settings`` name, these participants declared."""
    clock = clock or SystemClock()
    transport = await open_transport(settings, clock)
    store = open_journal(settings.database_url)
    try:
        await transport.declare(participants)
        yield DeadLetterDesk(transport, store, clock)
    finally:
        await transport.close(grace=5)
        await store.close()
