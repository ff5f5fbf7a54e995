"""A signed pull's block (:meth:`~gateway.store.base.Journal.pull`), on either database.

No transaction holds the pull together: the digest is remembered on entry
(``remember``'s statement, autocommitted), the delivery is its own statement, and a
block that raises forgets the digest again (one more statement), so that a retry of the
same signed bytes is served. The replay check thus comes before anything is taken
from a queue, a replay moves nothing, and no connection (nor SQLite's one writer) is
held while the broker answers.
"""

from __future__ import annotations

from datetime import datetime
from types import TracebackType
from typing import TYPE_CHECKING, Generic, Self

from gateway.store.database import C

if TYPE_CHECKING:
    from gateway.store.journal_flow import JournalFlow


class Pull(Generic[C]):
    """The pull's block and its :class:`~gateway.store.base.PullWindow` in one object,
    not an async generator around them: one per signed pull."""

    __slots__ = ("_journal", "_pull", "first")

    def __init__(self, journal: JournalFlow[C], pull: tuple[str, str, datetime, datetime]) -> None:
        self._journal = journal
        #: digest, participant, expires at, now: ``remember``'s arguments.
        self._pull = pull

    async def __aenter__(self) -> Self:
        journal = self._journal
        async with journal.database.writing() as connection:
            self.first = await journal._remember(connection, *self._pull)
        return self

    async def __aexit__(
        self,
        kind: type[BaseException] | None,
        error: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        # Only a digest this pull remembered: a replay's is the pull's it replays.
        if kind is not None and self.first:
            journal = self._journal
            database = journal.database
            async with database.writing() as connection:
                await database.run(connection, database.sql(journal.FORGET), self._pull[0])
