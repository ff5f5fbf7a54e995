"""Scatter-gather state of one service request, as pure functions of events.

Every event function takes the current :class:`ServiceRequestState` and the event's
facts (times are passed in; nothing here reads a clock) and returns an
:class:`Outcome`: the new state (the old one is never mutated), what the event did,
and whether the request became final with it. The process around it sends the
requests, correlates replies by MessageID (:func:`part_for_message`), sleeps until
:func:`next_deadline`, persists the state and journals late replies.

Completion predicates, evaluated after every change while ``PENDING``:

1. a required part rejected -> ``FAILED`` by ``required_rejected`` (fail fast; the
   state names the part in ``failed_part``);
2. a required part timed out -> ``TIMED_OUT`` by ``deadline`` (it cannot complete);
3. every required part answered and no optional part still pending ->
   ``COMPLETED`` by ``all_answered`` when every optional part answered too, else
   ``PARTIAL``: by ``deadline`` if an optional part timed out, by ``all_answered``
   if optional parts replied with a rejection.

The service deadline times out every pending part at once, so it ends in
``TIMED_OUT`` or ``PARTIAL``. The aggregated ``result`` (for ``COMPLETED`` and
``PARTIAL``) maps each part's result names to values found in its answer; names of
parts that did not answer are ``None``.

Answer data is the response element as JSON: an element with children becomes an
object keyed by child local name, a repeated child a list, a leaf its text.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum
from typing import Any

from pydantic import AwareDatetime, BaseModel, ConfigDict

from gateway.core.catalogue import Service
from gateway.core.errors import InternalError, NotFound
from gateway.core.service_lifecycle import FINAL, CompletedBy, ServiceState, check_transition


class PartStatus(StrEnum):
    PENDING = "PENDING"
    ANSWERED = "ANSWERED"
    REJECTED = "REJECTED"
    TIMED_OUT = "TIMED_OUT"


class _Frozen(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


class Rejection(_Frozen):
    code: str
    description: str


class PartState(_Frozen):
    id: str
    message_type: str
    required: bool
    deadline_at: AwareDatetime
    #: Result name -> element path in the answer (copied from the catalogue at
    #: submission, so a catalogue change never alters requests in flight).
    result_fields: tuple[tuple[str, str], ...] = ()
    status: PartStatus = PartStatus.PENDING
    message_id: uuid.UUID | None = None
    sent_at: AwareDatetime | None = None
    replied_at: AwareDatetime | None = None
    data: dict[str, Any] | None = None
    rejection: Rejection | None = None


class ServiceRequestState(_Frozen):
    id: uuid.UUID
    service: str
    status: ServiceState = ServiceState.PENDING
    completed_by: CompletedBy | None = None
    #: The required part whose rejection failed the request.
    failed_part: str | None = None
    created_at: AwareDatetime
    deadline_at: AwareDatetime
    completed_at: AwareDatetime | None = None
    parts: tuple[PartState, ...]
    result: dict[str, Any] | None = None

    @property
    def final(self) -> bool:
        return self.status in FINAL

    def part(self, part_id: str) -> PartState:
        for p in self.parts:
            if p.id == part_id:
                return p
        raise InternalError(
            f"service request {self.id} ({self.service}) has no part {part_id!r}",
            part=part_id,
        )


class Effect(StrEnum):
    APPLIED = "applied"
    #: The request was already final: the event is journaled as late, nothing changes.
    LATE = "late"
    #: Nothing to do (a repeated reply for a part that already replied, no deadline due).
    NO_CHANGE = "no_change"


@dataclass(frozen=True)
class Outcome:
    state: ServiceRequestState
    effect: Effect
    #: True exactly once in a request's life: on the event that made it final.
    became_final: bool


def new_service_request(
    request_id: uuid.UUID, service: Service, created_at: datetime
) -> ServiceRequestState:
    """A ``PENDING`` request with every part pending and its deadlines fixed."""
    return ServiceRequestState(
        id=request_id,
        service=service.code,
        created_at=created_at,
        deadline_at=created_at + service.deadline,
        parts=tuple(
            PartState(
                id=p.id,
                message_type=p.message_type,
                required=p.required,
                deadline_at=created_at + p.deadline,
                result_fields=p.result,
            )
            for p in service.parts
        ),
    )


def on_sent(
    state: ServiceRequestState, part_id: str, message_id: uuid.UUID, at: datetime
) -> ServiceRequestState:
    """Record the bus MessageID of a part's request and when it was sent."""
    part = state.part(part_id)
    return _replace(state, part.model_copy(update={"message_id": message_id, "sent_at": at}))


def part_for_message(state: ServiceRequestState, message_id: uuid.UUID) -> str:
    """The part whose request had ``message_id`` (replies correlate by it)."""
    for p in state.parts:
        if p.message_id == message_id:
            return p.id
    raise NotFound(
        f"service request {state.id} sent no request with MessageID {message_id}",
        message_id=str(message_id),
    )


def on_answer(
    state: ServiceRequestState, part_id: str, data: dict[str, Any], at: datetime
) -> Outcome:
    return _reply(state, part_id, at, status=PartStatus.ANSWERED, data=data)


def on_rejection(
    state: ServiceRequestState, part_id: str, code: str, description: str, at: datetime
) -> Outcome:
    rejection = Rejection(code=code, description=description)
    return _reply(state, part_id, at, status=PartStatus.REJECTED, rejection=rejection)


def on_deadline(state: ServiceRequestState, now: datetime) -> Outcome:
    """Time out every pending part whose deadline (or the service's) is at or before ``now``."""
    if state.final:
        return Outcome(state, Effect.NO_CHANGE, became_final=False)
    service_due = now >= state.deadline_at
    changed = state
    for p in state.parts:
        if p.status is PartStatus.PENDING and (service_due or now >= p.deadline_at):
            changed = _replace(changed, p.model_copy(update={"status": PartStatus.TIMED_OUT}))
    if changed is state:
        return Outcome(state, Effect.NO_CHANGE, became_final=False)
    return _evaluate(changed, now, failed_part=None)


def on_cancel(state: ServiceRequestState, at: datetime) -> Outcome:
    if state.final:
        return Outcome(state, Effect.LATE, became_final=False)
    return _finish(state, ServiceState.CANCELLED, CompletedBy.CANCELLED, at)


def next_deadline(state: ServiceRequestState) -> datetime | None:
    """When :func:`on_deadline` should next be called; ``None`` once final."""
    if state.final:
        return None
    pending = [p.deadline_at for p in state.parts if p.status is PartStatus.PENDING]
    return min([*pending, state.deadline_at])


# --- internals ----------------------------------------------------------------


def _replace(state: ServiceRequestState, part: PartState) -> ServiceRequestState:
    parts = tuple(part if p.id == part.id else p for p in state.parts)
    return state.model_copy(update={"parts": parts})


def _reply(
    state: ServiceRequestState,
    part_id: str,
    at: datetime,
    *,
    status: PartStatus,
    data: dict[str, Any] | None = None,
    rejection: Rejection | None = None,
) -> Outcome:
    part = state.part(part_id)
    if state.final:
        return Outcome(state, Effect.LATE, became_final=False)
    if part.status is not PartStatus.PENDING:
        # A redelivered reply, or a reply after this part's own deadline while the
        # request waits for others: the first outcome of a part stands.
        return Outcome(state, Effect.NO_CHANGE, became_final=False)
    updated = part.model_copy(
        update={"status": status, "replied_at": at, "data": data, "rejection": rejection}
    )
    failed = part_id if status is PartStatus.REJECTED and part.required else None
    return _evaluate(_replace(state, updated), at, failed_part=failed)


def _evaluate(state: ServiceRequestState, at: datetime, *, failed_part: str | None) -> Outcome:
    required = [p for p in state.parts if p.required]
    optional = [p for p in state.parts if not p.required]
    if failed_part is not None:
        return _finish(state, ServiceState.FAILED, CompletedBy.REQUIRED_REJECTED, at, failed_part)
    if any(p.status is PartStatus.TIMED_OUT for p in required):
        return _finish(state, ServiceState.TIMED_OUT, CompletedBy.DEADLINE, at)
    if all(p.status is PartStatus.ANSWERED for p in required) and not any(
        p.status is PartStatus.PENDING for p in optional
    ):
        if all(p.status is PartStatus.ANSWERED for p in optional):
            return _finish(state, ServiceState.COMPLETED, CompletedBy.ALL_ANSWERED, at)
        timed_out = any(p.status is PartStatus.TIMED_OUT for p in optional)
        reason = CompletedBy.DEADLINE if timed_out else CompletedBy.ALL_ANSWERED
        return _finish(state, ServiceState.PARTIAL, reason, at)
    return Outcome(state, Effect.APPLIED, became_final=False)


def _finish(
    state: ServiceRequestState,
    target: ServiceState,
    reason: CompletedBy,
    at: datetime,
    failed_part: str | None = None,
) -> Outcome:
    check_transition(state.status, target, reason)
    result = combine(state) if target in (ServiceState.COMPLETED, ServiceState.PARTIAL) else None
    final = state.model_copy(
        update={
            "status": target,
            "completed_by": reason,
            "completed_at": at,
            "failed_part": failed_part,
            "result": result,
        }
    )
    return Outcome(final, Effect.APPLIED, became_final=True)


def combine(state: ServiceRequestState) -> dict[str, Any]:
    """The aggregated result: every part's result names, from answered parts' data."""
    result: dict[str, Any] = {}
    for part in state.parts:
        for name, path in part.result_fields:
            answered = part.status is PartStatus.ANSWERED and part.data is not None
            result[name] = pick(part.data, path) if answered else None
    return result


def pick(data: Any, path: str) -> Any:
    """The value at element ``path`` (``A/B/C``) in answer data; lists are mapped over.

    Returns ``None`` where the answer has no such element.
    """
    current = data
    steps = path.split("/")
    for i, step in enumerate(steps):
        if isinstance(current, list):
            rest = "/".join(steps[i:])
            values = [pick(item, rest) for item in current]
            return [v for v in values if v is not None] or None
        if not isinstance(current, dict) or step not in current:
            return None
        current = current[step]
    return current
