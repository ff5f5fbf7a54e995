"""The journal's operations written once: the checks, the reads, and the order of the
writes, over a backend's SQL and its :class:`~gateway.store.database.Database`.

A backend (:mod:`gateway.store.journal_pg`, :mod:`gateway.store.journal_sqlite`)
names its SQL as class attributes and implements the writes its database does its
own way: ``_accept``, ``_move``, ``_deliver``, ``_acknowledge``, ``_take_reply`` and
``_advance``.
"""

from __future__ import annotations

from collections.abc import Sequence
from contextlib import AbstractAsyncContextManager
from dataclasses import replace
from datetime import datetime
from typing import Any, ClassVar, Generic

from gateway.core.errors import InvalidContent, NotFound
from gateway.core.lifecycle import MessageState, check_transition
from gateway.store.base import Closing, PullWindow, ServiceRequests
from gateway.store.database import C, Database
from gateway.store.journal_pull import Pull
from gateway.store.journal_rules import (
    Filters,
    ReplayPurge,
    Step,
    answer_path,
    check_find,
    conflict,
    lookup_id,
    not_found,
    page_of,
)
from gateway.store.records import (
    DEFAULT_PAGE_SIZE,
    AcceptResult,
    Acknowledged,
    Answered,
    MessageRecord,
    NewMessage,
    Page,
    TransitionRecord,
    canonical_message_id,
    require_aware,
    require_name,
)
from gateway.store.replies import AlongReply, ReplySave, ReplyTaken
from gateway.store.rows import MESSAGE_FULL, TRANSITION_COLUMNS, Row, message_of, transition_of


class JournalFlow(Closing, Generic[C]):
    """The :class:`~gateway.store.base.Journal` on a database with connections ``C``.

    The SQL is written once with ``$n`` parameters (:meth:`Database.sql` puts them in
    the backend's form); a backend names what it writes otherwise."""

    STATE = "SELECT state, version FROM messages WHERE message_id = $1"
    BY_ID = f"SELECT {MESSAGE_FULL} FROM messages WHERE message_id = $1"
    HISTORY_OF = f"SELECT {TRANSITION_COLUMNS} FROM transitions WHERE message_id = $1 ORDER BY id"
    RESPONSES_TO = (
        f"SELECT {MESSAGE_FULL} FROM messages WHERE in_reply_to = $1 "
        "ORDER BY created_at, message_id"
    )
    #: $1 request, $2 response: a row if the claim is (now) that response's.
    CLAIM = """
UPDATE messages SET answered_by = $2
WHERE message_id = $1 AND kind = 'request' AND (answered_by IS NULL OR answered_by = $2)
RETURNING message_id
"""
    #: $1 digest, $2 participant, $3 expires at: a row if the digest was new.
    REMEMBER = """
INSERT INTO replay_guard (digest, participant, expires_at) VALUES ($1, $2, $3)
ON CONFLICT (digest) DO NOTHING RETURNING digest
"""
    FORGET_EXPIRED = "DELETE FROM replay_guard WHERE expires_at < $1"
    #: $1 digest: remembered by a pull whose block then failed (:mod:`.journal_pull`).
    FORGET = "DELETE FROM replay_guard WHERE digest = $1"
    #: $1 id: the request's head and ``answered_by``, locked where the database can.
    REQUEST_FOR_ANSWER: ClassVar[str]

    def __init__(self, database: Database[C], requests: ServiceRequests) -> None:
        self.database = database
        self._requests = requests
        self._purge = ReplayPurge()

    def service_requests(self) -> ServiceRequests:
        return self._requests

    async def migrate(self) -> None:
        await self.database.migrate()

    async def close(self) -> None:
        await self.database.close()

    # --- what a backend does its own way ---------------------------------------------------

    async def _accept(
        self,
        connection: C,
        message: NewMessage,
        at: datetime,
        reason: str | None,
        actor: str | None,
    ) -> AcceptResult:
        """Insert ``message`` and its first transition, or tell the duplicate."""
        raise NotImplementedError

    async def _move(
        self,
        connection: C,
        message_id: str,
        step: Step,
        version: int | None,
        at: datetime,
        actor: str | None,
    ) -> MessageRecord:
        """One conditional move and its history row; ``NotFound`` or
        ``TransitionConflict`` if the message is unknown or not where ``step`` starts."""
        raise NotImplementedError

    async def _acknowledge(
        self, message_id: str, at: datetime, reason: str | None, actor: str | None
    ) -> Acknowledged:
        raise NotImplementedError

    async def _advance(
        self,
        connection: C,
        request_id: str,
        steps: list[Step],
        to_state: MessageState,
        at: datetime,
        answered_by: str | None,
    ) -> MessageRecord:
        """Move the request (locked by this transaction) along ``steps`` to ``to_state``,
        each step journaled, and record its final answer (None: unchanged)."""
        raise NotImplementedError

    async def _answer_as_seen(
        self,
        response: NewMessage,
        seen: MessageRecord,
        steps: list[Step],
        final: bool,
        at: datetime,
        actor: str | None,
    ) -> Answered | None:
        """``answer`` in one statement (all or nothing, no transaction around it), if the
        request is as ``seen`` or further along its path (for a ``final`` answer,
        unclaimed) and the response is new; None (nothing written) otherwise, or where
        the backend has no such statement."""
        return None

    # --- the operations ----------------------------------------------------------------------

    async def accept(
        self,
        message: NewMessage,
        *,
        at: datetime,
        reason: str | None = None,
        actor: str | None = None,
    ) -> AcceptResult:
        require_aware("at", at)
        require_name("actor", actor)
        return await self._accept_checked(message, at, reason, actor)

    async def _accept_checked(
        self, message: NewMessage, at: datetime, reason: str | None, actor: str | None
    ) -> AcceptResult:
        """:meth:`accept` once its arguments are checked (a backend may gather calls)."""
        async with self.database.writing() as connection:
            return await self._accept(connection, message, at, reason, actor)

    async def transition(
        self,
        message_id: str,
        to_state: MessageState,
        *,
        at: datetime,
        reason: str | None = None,
        actor: str | None = None,
        expected_version: int | None = None,
        expected_state: MessageState | None = None,
    ) -> MessageRecord:
        require_aware("at", at)
        require_name("actor", actor)
        message_id = lookup_id(message_id)
        target = MessageState(to_state)
        version: int | None
        async with self.database.writing() as connection:
            if expected_state is not None:
                state, version = MessageState(expected_state), expected_version
            else:
                row = await self._one(connection, self.STATE, message_id)
                if row is None:
                    raise not_found(message_id)
                state, version = MessageState(row["state"]), int(row["version"])
                if expected_version is not None and version != expected_version:
                    raise conflict(message_id, state, target, version)
            check_transition(state, target)
            step = Step(state, target, reason)
            return await self._move(connection, message_id, step, version, at, actor)

    async def deliver(
        self,
        message_id: str,
        *,
        at: datetime,
        reason: str | None,
        queued_reason: str | None,
        actor: str | None = None,
    ) -> MessageRecord:
        require_aware("at", at)
        require_name("actor", actor)
        return await self._deliver(lookup_id(message_id), at, reason, queued_reason, actor)

    async def _deliver(
        self,
        message_id: str,
        at: datetime,
        reason: str | None,
        queued_reason: str | None,
        actor: str | None,
    ) -> MessageRecord:
        raise NotImplementedError

    async def acknowledge(
        self, message_id: str, *, at: datetime, reason: str | None = None, actor: str | None = None
    ) -> Acknowledged:
        require_aware("at", at)
        require_name("actor", actor)
        return await self._acknowledge(lookup_id(message_id), at, reason, actor)

    async def take_reply(
        self,
        message_id: str,
        save: ReplySave | None,
        *,
        at: datetime,
        reason: str | None,
        queued_reason: str | None,
        actor: str | None = None,
        along: Sequence[AlongReply] = (),
    ) -> ReplyTaken:
        require_aware("at", at)
        require_name("actor", actor)
        message_id = lookup_id(message_id)
        along = [replace(other, message_id=lookup_id(other.message_id)) for other in along]
        if len({message_id, *(other.message_id for other in along)}) != len(along) + 1:
            raise ValueError("the responses taken along must be other responses, each once")
        if along and save is None:  # the save's lock on its request orders the writers
            raise ValueError("responses are taken along only with a save")
        return await self._take_reply(message_id, save, at, reason, queued_reason, actor, along)

    async def _take_reply(
        self,
        message_id: str,
        save: ReplySave | None,
        at: datetime,
        reason: str | None,
        queued_reason: str | None,
        actor: str | None,
        along: Sequence[AlongReply],
    ) -> ReplyTaken:
        raise NotImplementedError

    async def answer(
        self,
        response: NewMessage,
        *,
        final: bool,
        at: datetime,
        actor: str | None = None,
        seen: MessageRecord | None = None,
    ) -> Answered:
        require_aware("at", at)
        require_name("actor", actor)
        request_id = response.in_reply_to
        if request_id is None:
            raise InvalidContent("an answer must name its request", message_id=response.message_id)
        if seen is not None and seen.message_id == request_id:
            steps = answer_path(seen.state, final, response.message_id)
            if steps or final:
                answered = await self._answer_as_seen(response, seen, steps, final, at, actor)
                if answered is not None:
                    return answered
        async with self.database.transaction() as connection:
            return await self._answer(connection, response, request_id, final, at, actor)

    async def _answer(
        self,
        connection: C,
        response: NewMessage,
        request_id: str,
        final: bool,
        at: datetime,
        actor: str | None,
    ) -> Answered:
        """``answer`` on the request read (and locked, where the database can) now."""
        row = await self._one(
            connection,
            self.REQUEST_FOR_ANSWER,
            request_id,
        )
        if row is None:
            raise not_found(request_id)
        request = message_of(row)
        claimed = row["answered_by"]
        if final and claimed not in (None, response.message_id):
            return Answered(None, request)
        result = await self._accept(connection, response, at, None, actor)
        steps = answer_path(request.state, final, response.message_id)
        if steps or (final and claimed is None):
            request = await self._advance(
                connection,
                request_id,
                steps,
                steps[-1].to_state if steps else request.state,
                at,
                response.message_id if final else None,
            )
        return Answered(result, request)

    async def claim_answer(self, request_id: str, response_id: str) -> bool:
        try:
            request_id = lookup_id(request_id)
        except NotFound:
            return False
        response_id = canonical_message_id(response_id)
        async with self.database.writing() as connection:
            row = await self._one(
                connection,
                self.CLAIM,
                request_id,
                response_id,
            )
        return row is not None

    async def get(self, message_id: str) -> MessageRecord:
        message_id = lookup_id(message_id)
        async with self.database.reading() as connection:
            row = await self._one(connection, self.BY_ID, message_id)
        if row is None:
            raise not_found(message_id)
        return message_of(row)

    async def history(self, message_id: str) -> list[TransitionRecord]:
        message_id = lookup_id(message_id)
        async with self.database.reading() as connection:
            rows = await self._all(connection, self.HISTORY_OF, message_id)
        if not rows:  # accept writes the first transition with the message, atomically
            raise not_found(message_id)
        return [transition_of(row) for row in rows]

    async def find(
        self,
        *,
        sender: str | None = None,
        recipient: str | None = None,
        state: MessageState | None = None,
        since: datetime | None = None,
        limit: int = DEFAULT_PAGE_SIZE,
        after: str | None = None,
    ) -> Page:
        check_find(limit, since)
        filters = Filters(self.database.param, self.database.time)
        filters.equal("sender", sender)
        filters.equal("recipient", recipient)
        filters.equal("state", None if state is None else MessageState(state).value)
        filters.at_least("created_at", since)
        filters.after("created_at", "message_id", after)
        sql = (
            f"SELECT {MESSAGE_FULL} FROM messages {filters.where()} "
            f"ORDER BY created_at, message_id LIMIT {filters.param(limit + 1)}"
        )
        async with self.database.reading() as connection:
            rows = await self.database.fetch_all(connection, sql, *filters.values)
        return page_of([message_of(row) for row in rows], limit)

    async def responses_to(self, request_id: str) -> list[MessageRecord]:
        try:
            request_id = canonical_message_id(request_id)
        except InvalidContent:
            return []
        async with self.database.reading() as connection:
            rows = await self._all(connection, self.RESPONSES_TO, request_id)
        return [message_of(row) for row in rows]

    async def remember(
        self, digest: str, participant: str, *, expires_at: datetime, now: datetime
    ) -> bool:
        require_name("participant", participant)
        require_aware("expires_at", expires_at)
        require_aware("now", now)
        async with self.database.writing() as connection:
            return await self._remember(connection, digest, participant, expires_at, now)

    def pull(
        self, digest: str, participant: str, *, expires_at: datetime, now: datetime
    ) -> AbstractAsyncContextManager[PullWindow]:
        require_name("participant", participant)
        require_aware("expires_at", expires_at)
        require_aware("now", now)
        return Pull(self, (digest, participant, expires_at, now))

    async def _one(self, connection: C, sql: str, *args: Any) -> Row | None:
        """One row of ``sql`` (written with ``$n`` parameters) on ``connection``."""
        return await self.database.fetch_one(connection, self.database.sql(sql), *args)

    async def _all(self, connection: C, sql: str, *args: Any) -> list[Row]:
        return await self.database.fetch_all(connection, self.database.sql(sql), *args)

    async def _remember(
        self, connection: C, digest: str, participant: str, expires_at: datetime, now: datetime
    ) -> bool:
        """``remember`` on ``connection`` (inside the caller's transaction, if any)."""
        database = self.database
        if self._purge.due(now):
            await database.run(connection, database.sql(self.FORGET_EXPIRED), database.time(now))
        expires = database.time(expires_at)
        return await self._one(connection, self.REMEMBER, digest, participant, expires) is not None
