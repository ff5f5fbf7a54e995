"""The lifecycle of one service request: states, the only legal transitions, and why.

A service request is born ``PENDING`` and ends in exactly one final state; nothing
leaves a final state (a reply that arrives afterwards is *late* and changes nothing).

=============  =====================================================================
State          Meaning
=============  =====================================================================
PENDING        parts are out; waiting for replies or deadlines
COMPLETED      every part answered
PARTIAL        every required part answered; an optional part was rejected or did
               not answer by its deadline (or the service deadline)
FAILED         a required part was rejected (fail fast: the result names it)
TIMED_OUT      a required part did not answer by its own deadline or by the
               service deadline
CANCELLED      the portal cancelled it while pending
=============  =====================================================================

Each final state records ``completed_by``; :data:`REASONS` lists the legal pairs:

* ``all_answered``: every part replied (``COMPLETED``, or ``PARTIAL`` when an optional
  part's reply was a rejection);
* ``required_rejected``: ``FAILED``;
* ``deadline``: a part or the service deadline passed (``TIMED_OUT``, or ``PARTIAL``
  when only optional parts were missing);
* ``cancelled``: ``CANCELLED``.
"""

from __future__ import annotations

from enum import StrEnum

from gateway.core.errors import InternalError


class ServiceState(StrEnum):
    PENDING = "PENDING"
    COMPLETED = "COMPLETED"
    PARTIAL = "PARTIAL"
    FAILED = "FAILED"
    TIMED_OUT = "TIMED_OUT"
    CANCELLED = "CANCELLED"


class CompletedBy(StrEnum):
    ALL_ANSWERED = "all_answered"
    REQUIRED_REJECTED = "required_rejected"
    DEADLINE = "deadline"
    CANCELLED = "cancelled"


S = ServiceState
C = CompletedBy

TRANSITIONS: dict[ServiceState, frozenset[ServiceState]] = {
    S.PENDING: frozenset({S.COMPLETED, S.PARTIAL, S.FAILED, S.TIMED_OUT, S.CANCELLED}),
    S.COMPLETED: frozenset(),
    S.PARTIAL: frozenset(),
    S.FAILED: frozenset(),
    S.TIMED_OUT: frozenset(),
    S.CANCELLED: frozenset(),
}

FINAL: frozenset[ServiceState] = frozenset(s for s, nxt in TRANSITIONS.items() if not nxt)

REASONS: dict[ServiceState, frozenset[CompletedBy]] = {
    S.PENDING: frozenset(),
    S.COMPLETED: frozenset({C.ALL_ANSWERED}),
    S.PARTIAL: frozenset({C.ALL_ANSWERED, C.DEADLINE}),
    S.FAILED: frozenset({C.REQUIRED_REJECTED}),
    S.TIMED_OUT: frozenset({C.DEADLINE}),
    S.CANCELLED: frozenset({C.CANCELLED}),
}
"""The ``completed_by`` reasons each state may be reached with."""


class IllegalServiceTransition(InternalError):
    code = "internal"


def can_transition(current: ServiceState, target: ServiceState, completed_by: CompletedBy) -> bool:
    return target in TRANSITIONS[current] and completed_by in REASONS[target]


def check_transition(
    current: ServiceState, target: ServiceState, completed_by: CompletedBy
) -> ServiceState:
    """Return ``target`` if the move (with that reason) is legal, else raise."""
    if not can_transition(current, target, completed_by):
        raise IllegalServiceTransition(
            f"service request cannot go from {current} to {target} by {completed_by}",
            current=str(current),
            target=str(target),
            completed_by=str(completed_by),
        )
    return target
