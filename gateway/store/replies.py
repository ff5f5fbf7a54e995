"""A reply taken into its service request: the journal's moves of a response pushed to
an in-process subscriber and the save of the service request it changes, as one write.

:meth:`~gateway.store.base.Journal.take_reply` moves the response from where a copy is
handed out (ACCEPTED, QUEUED or DELIVERED) to ACKED, each step journaled, settles its
request (RESPONDED -> RESPONSE_DELIVERED when it is the request's claimed final
answer, as :meth:`~gateway.store.base.Journal.acknowledge` does) and, given a
:class:`ReplySave`, saves the service request as a compare-and-set on its version:
all of it or none of it. Other responses may go :class:`along <AlongReply>`: taken in
the same write, each along its own path, if the first one is. On PostgreSQL that is
one statement (:mod:`gateway.store.replies_pg`), on SQLite one transaction
(:mod:`gateway.store.journal_sqlite`).

The values here are shared by both; the path a response takes, and the states it is
taken from, are :func:`gateway.store.journal_rules.reply_path` and ``TAKEN_FROM`` there.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum

from gateway.core.aggregation import ServiceRequestState
from gateway.store.records import MessageRecord
from gateway.store.service_requests import ServiceRequestRecord


@dataclass(frozen=True, slots=True)
class ReplySave:
    """The service request a reply changes: ``state`` is saved only if the stored
    request is still at ``expected_version``.

    ``claim_callback_until``: if the save makes the request final, its result callback
    is claimed for this process (its first attempt counted, leased until then) in the
    same write, as :meth:`~gateway.store.callback_outbox.CallbackOutbox.claim_due`
    would; the saved record shows the claim. None: the callback becomes due, for any
    process's outbox to claim."""

    state: ServiceRequestState
    expected_version: int
    claim_callback_until: datetime | None = None


@dataclass(frozen=True, slots=True)
class AlongReply:
    """Another response taken in the same write (the replies of one service request that
    came together), with the reasons its own steps are journaled with. It is taken only
    if the first response is, and only from a state a response is taken from; if not, it
    is left as it is, for a take of its own."""

    message_id: str
    reason: str | None
    queued_reason: str | None


class ReplyOutcome(StrEnum):
    #: The response is journaled ACKED, and the service request saved (if asked).
    TAKEN = "taken"
    #: The service request is no longer at the expected version: nothing was written.
    #: Re-read it, apply the reply again, and take it again.
    CONFLICT = "conflict"
    #: The response is not in a state it is taken from (a redundant copy: ACKED
    #: already, or past its delivery): nothing was written.
    NOT_TAKEN = "not_taken"


@dataclass(frozen=True, slots=True)
class ReplyTaken:
    """What :meth:`~gateway.store.base.Journal.take_reply` found and did."""

    outcome: ReplyOutcome
    #: The response (without its body): as moved, or as found when not taken.
    record: MessageRecord
    #: The service request as saved; None when nothing was saved.
    saved: ServiceRequestRecord | None = None
    #: The responses :class:`along <AlongReply>` that were taken with it (their ids).
    along: frozenset[str] = frozenset()
