"""Replies to one service request take turns, and those that wait are taken together.

Each reply is applied to its service request and settled by its ``take``: the
reply journaled done in one write with the request's save (a compare-and-set on the
version; :meth:`~gateway.store.base.Journal.take_reply`). Replies to one request
wait for each other here rather than collide in that compare-and-set (kept for other
processes): a collision costs a re-read and a second write.

When the replies of a fan-out arrive together, the second and third wait for the
first one's write. The turn after it takes every reply waiting by then: their events
are applied in the order they came, and the request is saved once, in the write of
the first of them (its *carrier*), which journals the others done too (taken
*along*: :class:`~gateway.store.replies.AlongReply`) and then acks every one. A reply
its take cannot carry (a redundant copy, say) journals itself with no save
(``take(None)``) once the turn is over. (Before, all the others did: in a three-part
fan-out, two writes right after the save that held up the request's result callback;
measured on 2 cores, the callback began 0.90 ms after the save, against 0.44 for a
single part.) If the process dies after the write and before the acks, the replies
are redelivered: they change nothing (a part's first outcome stands, and it is saved)
and are dropped as any redundant copy. A carrier that turns out to be a redundant
copy (the journal had it done already) writes nothing: the next one carries the save.

That next turn runs in the task whose write just ended, on the record it saved,
before the turn's lock is let go: the waiting replies' own tasks would each first
have to be scheduled behind whatever else the loop runs (in a fan-out measured at
0.8 ms between one write's end and the next's start, against 0.08 ms here). So the
request is final one write earlier, and its callback goes out sooner.

With a gathering window (:attr:`ReplyTurns.gather`, set by the process that consumes
replies as they come), a turn that would leave its request unfinished first waits up
to that long for the request's other replies, and takes those that come in the same
write: a fan-out whose agencies answer within the window is saved once, after its last
reply, not once per reply with each write waiting for the one before (measured in a
three-part fan-out on 2 cores: up to three writes of 1.5-2.8 ms in a row). Nothing
waits that would finish the request, and the window only delays when a part's
progress is saved, not the request's result; a reply waiting in it is as unsettled as
one waiting for its turn (one from the broker keeps its delivery, a slot of the
intake's prefetch, for at most the window).

Each reply lets its provider's answer go (:meth:`TakeReply.answer`, held by the router:
:mod:`gateway.router.holds`) when its turn is through with it: the one that completes
a turn as its write begins, those that waited in it once the request's outcome is out
(the save's ``answer``: after the result callback the write made due); one that only
journals itself (``take(None)``), as that write begins.
"""

from __future__ import annotations

import asyncio
import functools
import uuid
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Final, Protocol

import structlog

from gateway.aggregator.keyed_locks import KeyedLocks
from gateway.aggregator.responses import Event, apply_event
from gateway.core.aggregation import Outcome, ServiceRequestState
from gateway.core.clock import Clock
from gateway.core.errors import InternalError
from gateway.store.replies import ReplyOutcome, ReplySave, ReplyTaken
from gateway.store.service_requests import ServiceRequestConflict, ServiceRequestRecord

log = structlog.get_logger(__name__)

#: Compare-and-set attempts before a conflict is given up (each re-reads the record).
MAX_SAVE_ATTEMPTS: Final = 20


class TakeReply(Protocol):
    """The one write that settles a reply (the router's, through the intake): the
    reply journaled done with ``save`` stored (none: the journal only), all or
    nothing, and with it, if it is taken, the replies of the takes ``along`` that it
    can carry (those of the same intake); :attr:`ReplyTaken.along
    <gateway.store.replies.ReplyTaken.along>` names those journaled by their
    :attr:`response_id`, and they are settled. A ``CONFLICT`` wrote nothing; None:
    the reply was a redundant copy, dropped without writing."""

    @property
    def response_id(self) -> str:
        """The id of the response this takes."""
        ...

    async def __call__(
        self, save: ReplySave | None, along: Sequence[TakeReply] = ()
    ) -> ReplyTaken | None: ...

    def answer(self) -> None:
        """Let the reply's provider have its answer, which the router may hold until
        then (:mod:`gateway.router.holds`); a take without a save does so itself."""


@dataclass(frozen=True)
class Applied:
    """What became of a reply in its turn."""

    record: ServiceRequestRecord
    outcome: Outcome
    #: False: the reply has yet to journal itself done (``take(None)``).
    journaled: bool


@dataclass(eq=False)
class _Waiting:
    part_id: str
    event: Event
    take: TakeReply
    applied: asyncio.Future[Applied | None]


class ReplyTurns:
    """The turns of the replies to each service request (in this process)."""

    def __init__(
        self,
        *,
        clock: Clock,
        current: Callable[[uuid.UUID], Awaitable[ServiceRequestRecord]],
        reread: Callable[[uuid.UUID], Awaitable[ServiceRequestRecord]],
        saved: Callable[[ServiceRequestRecord, bool, Callable[[], None]], None],
        claim_until: Callable[[datetime], datetime | None] = lambda _: None,
    ) -> None:
        """``current``: the record as this process last saw it (or read); ``reread``:
        from the store, after a conflict; ``saved``: told of each save, whether it made
        the request final, and what to call once the request's outcome is out (its
        result callback attempted, if it claimed one); ``claim_until``: given the time
        of a save, until when the callback of a request it makes final is claimed for
        this process (:class:`~gateway.store.replies.ReplySave`), or None."""
        self._clock = clock
        self._current = current
        self._reread = reread
        self._saved = saved
        self._claim_until = claim_until
        self._locks = KeyedLocks()
        self._waiting: dict[uuid.UUID, list[_Waiting]] = {}
        #: Set when a reply comes for a request whose turn is gathering.
        self._arrived: dict[uuid.UUID, asyncio.Event] = {}
        #: Seconds a turn that leaves its request unfinished waits for more replies.
        self.gather = 0.0

    async def take(
        self, sr_id: uuid.UUID, part_id: str, event: Event, take: TakeReply
    ) -> tuple[ServiceRequestRecord, Outcome] | None:
        """Apply ``event`` (a reply to ``part_id``) to service request ``sr_id`` and
        settle the reply through ``take``; None when it was a redundant copy."""
        waiting = _Waiting(part_id, event, take, asyncio.get_running_loop().create_future())
        self._waiting.setdefault(sr_id, []).append(waiting)
        if (arrived := self._arrived.get(sr_id)) is not None:
            arrived.set()
        try:
            async with self._locks.hold(sr_id):
                # Every reply waiting now, this one among them unless an earlier turn
                # took it.
                turn = self._waiting.pop(sr_id, [])
                if turn:
                    await self._take_together(sr_id, turn)
        except BaseException:
            self._withdraw(sr_id, waiting)
            raise
        applied = await waiting.applied
        if applied is None:
            return None  # a redundant copy: its write as a carrier dropped it
        if not applied.journaled and await take(None) is None:
            return None  # a redundant copy, dropped by the journal
        return applied.record, applied.outcome

    def _withdraw(self, sr_id: uuid.UUID, waiting: _Waiting) -> None:
        """A reply whose task ends before its turn (cancelled): no turn takes it."""
        queue = self._waiting.get(sr_id)
        if queue is not None and waiting in queue:
            queue.remove(waiting)
            if not queue:
                del self._waiting[sr_id]
        if waiting.applied.done() and not waiting.applied.cancelled():
            waiting.applied.exception()  # retrieved: asyncio does not log it then

    async def _take_together(self, sr_id: uuid.UUID, turn: list[_Waiting]) -> None:
        """Settle ``turn``'s replies, then those that came while they were written, until
        none waits; what befalls each is set on its future (an error too: each reply's
        own task raises it)."""
        try:
            record = await self._current(sr_id)
            while turn:
                await self._gather(sr_id, record, turn)
                record, turn = await self._carry(record, turn)
                if not turn:  # the next ones are taken here, with the record just saved
                    turn = self._waiting.pop(sr_id, [])
        except BaseException as exc:
            error = exc if isinstance(exc, Exception) else InternalError("reply turn cancelled")
            for waiting in turn:
                waiting.take.answer()
                if not waiting.applied.done():
                    waiting.applied.set_exception(error)
            if not isinstance(exc, Exception):
                raise

    async def _gather(
        self, sr_id: uuid.UUID, record: ServiceRequestRecord, turn: list[_Waiting]
    ) -> None:
        """Add to ``turn`` the replies that come within :attr:`gather` seconds, while
        it would leave ``record`` unfinished."""
        if self.gather <= 0:
            return
        deadline = asyncio.get_running_loop().time() + self.gather
        arrived = self._arrived[sr_id] = asyncio.Event()
        try:
            while not self._finishes(record, turn):
                try:
                    async with asyncio.timeout_at(deadline):
                        await arrived.wait()
                except TimeoutError:
                    return
                arrived.clear()
                turn.extend(self._waiting.pop(sr_id, []))
        finally:
            del self._arrived[sr_id]

    def _finishes(self, record: ServiceRequestRecord, turn: list[_Waiting]) -> bool:
        state, _ = _applied(record.state, turn, self._clock.now())
        return state.final

    async def _carry(
        self, record: ServiceRequestRecord, turn: list[_Waiting]
    ) -> tuple[ServiceRequestRecord, list[_Waiting]]:
        """Apply ``turn``'s events to ``record`` and save the result with the first
        reply's write; the record as it is now, and the replies left for another try
        (the carrier was a redundant copy)."""
        for _ in range(MAX_SAVE_ATTEMPTS):
            now = self._clock.now()
            state, outcomes = _applied(record.state, turn, now)
            carrier = turn[0]
            if state is record.state:  # nothing changes: each only journals itself
                for waiting, outcome in zip(turn, outcomes, strict=True):
                    waiting.applied.set_result(Applied(record, outcome, journaled=False))
                return record, []
            save = ReplySave(state, record.version, self._claim_until(now))
            turn[-1].take.answer()  # it waited for no other: answered as its write begins
            taken = await carrier.take(save, [waiting.take for waiting in turn[1:]])
            if taken is None:  # the carrier was a redundant copy: nothing written
                carrier.take.answer()
                carrier.applied.set_result(None)
                return record, turn[1:]
            if taken.outcome is ReplyOutcome.TAKEN and taken.saved is not None:
                saved = taken.saved
                final = any(outcome.became_final for outcome in outcomes)
                waited = [waiting.take for waiting in turn[:-1]]
                self._saved(saved, final, functools.partial(_answer, waited))
                for n, (waiting, outcome) in enumerate(zip(turn, outcomes, strict=True)):
                    journaled = n == 0 or waiting.take.response_id in taken.along
                    waiting.applied.set_result(Applied(saved, outcome, journaled))
                return saved, []
            log.info("save_conflict", service_request_id=str(record.id), version=record.version)
            fresh = await self._reread(record.id)
            if fresh.version == record.version:
                raise InternalError(
                    f"service request {record.id} is not in the journal's database: open "
                    "the journal and the service-request store on one (open_stores)",
                    service_request_id=str(record.id),
                )
            record = fresh
        raise ServiceRequestConflict(
            f"service request {record.id} kept moving under {MAX_SAVE_ATTEMPTS} replies",
            service_request_id=str(record.id),
        )


def _answer(takes: list[TakeReply]) -> None:
    for take in takes:
        take.answer()


def _applied(
    state: ServiceRequestState, turn: list[_Waiting], now: datetime
) -> tuple[ServiceRequestState, list[Outcome]]:
    """``state`` with ``turn``'s events applied in order, and each one's outcome."""
    outcomes = []
    for waiting in turn:
        outcome = apply_event(state, waiting.part_id, waiting.event, now)
        outcomes.append(outcome)
        state = outcome.state
    return state, outcomes
