"""The decisions on copies, walked for every state: the table as written, and each
decision consistent with the lifecycle's legal transitions."""

from __future__ import annotations

import itertools

import pytest

from gateway.core.copies import (
    DELIVERY_OVER,
    AckAction,
    CopyAction,
    DeadLetterAction,
    on_ack,
    on_copy,
    on_dead_letter,
    why_not_purgeable,
    why_not_replayable,
)
from gateway.core.lifecycle import TERMINAL, MessageState, can_transition

S = MessageState
A = CopyAction

#: (state, held here, lost a race) -> action, for every combination.
COPY_TABLE: dict[tuple[MessageState, bool, bool], CopyAction] = {
    **{(s, h, r): A.DROP for s in DELIVERY_OVER for h in (False, True) for r in (False, True)},
    (S.DELIVERED, False, False): A.REDELIVER,
    (S.DELIVERED, True, False): A.DROP,
    (S.DELIVERED, False, True): A.DROP,
    (S.DELIVERED, True, True): A.DROP,
    (S.ACCEPTED, False, False): A.QUEUE_AND_DELIVER,
    (S.ACCEPTED, True, False): A.QUEUE_AND_DELIVER,
    (S.QUEUED, False, False): A.DELIVER,
    (S.QUEUED, True, False): A.DELIVER,
    (S.ACCEPTED, False, True): A.REQUEUE,
    (S.ACCEPTED, True, True): A.REQUEUE,
    (S.QUEUED, False, True): A.REQUEUE,
    (S.QUEUED, True, True): A.REQUEUE,
}

CASES = list(itertools.product(MessageState, (False, True), (False, True)))


def test_the_table_covers_every_state_and_flag() -> None:
    assert set(COPY_TABLE) == set(CASES)


@pytest.mark.parametrize(("state", "held_here", "lost_race"), CASES)
def test_each_copy_decision(state: MessageState, held_here: bool, lost_race: bool) -> None:
    action = on_copy(state, held_here=held_here, lost_race=lost_race)
    assert action is COPY_TABLE[state, held_here, lost_race]


@pytest.mark.parametrize(("state", "held_here", "lost_race"), CASES)
def test_each_copy_decision_takes_only_legal_moves(
    state: MessageState, held_here: bool, lost_race: bool
) -> None:
    """What the router journals for each action is a legal path to DELIVERED; a copy is
    dropped only when no copy may be handed out now."""
    action = on_copy(state, held_here=held_here, lost_race=lost_race)
    path = {
        A.DELIVER: [S.DELIVERED],
        A.QUEUE_AND_DELIVER: [S.QUEUED, S.DELIVERED],
        A.REDELIVER: [S.QUEUED, S.DELIVERED],
        A.DROP: [],
        A.REQUEUE: [],
    }[action]
    current = state
    for target in path:
        assert can_transition(current, target), (state, action, current, target)
        current = target
    if action is A.DROP:
        # Over, or out to someone right now: DELIVERED, or a state with no way back
        # to a consumer except an operator's replay.
        assert state is S.DELIVERED or not can_transition(state, S.DELIVERED)
        assert state is S.DELIVERED or state in TERMINAL or state in DELIVERY_OVER


@pytest.mark.parametrize("state", list(MessageState))
def test_each_ack_decision(state: MessageState) -> None:
    expected = {
        S.DELIVERED: AckAction.ACKNOWLEDGE,
        S.RESPONDED: AckAction.ALREADY_SETTLED,
        S.RESPONSE_DELIVERED: AckAction.ALREADY_SETTLED,
    }.get(state, AckAction.NOT_HELD)
    assert on_ack(state) is expected
    if expected is AckAction.ACKNOWLEDGE:
        assert can_transition(state, S.ACKED)


@pytest.mark.parametrize("state", list(MessageState))
def test_replay_and_purge_only_from_the_dead_letter_states(state: MessageState) -> None:
    replayable = why_not_replayable(state) is None
    assert replayable == (state is S.DEAD_LETTERED)
    if replayable:
        assert can_transition(state, S.QUEUED)
    purgeable = why_not_purgeable(state) is None
    assert purgeable == (state in {S.DEAD_LETTERED, S.EXPIRED, S.PURGED})
    assert purgeable == (can_transition(state, S.PURGED) or state is S.PURGED)


D = DeadLetterAction
_RECORD_ONLY_WHILE_OUT = {S.QUEUED: D.RECORD, S.DELIVERED: D.RECORD}
#: (state, target) -> action: to DEAD_LETTERED only while queued or out; to EXPIRED
#: from anything not yet answered.
DEAD_LETTER_TABLE: dict[tuple[MessageState, MessageState], DeadLetterAction] = {
    **{(s, S.DEAD_LETTERED): _RECORD_ONLY_WHILE_OUT.get(s, D.IGNORE) for s in MessageState},
    **{(s, S.EXPIRED): D.IGNORE for s in MessageState},
    (S.ACCEPTED, S.DEAD_LETTERED): D.QUEUE_AND_RECORD,
    (S.DEAD_LETTERED, S.DEAD_LETTERED): D.ALREADY,
    (S.ACCEPTED, S.EXPIRED): D.QUEUE_AND_RECORD,
    (S.QUEUED, S.EXPIRED): D.RECORD,
    (S.DELIVERED, S.EXPIRED): D.RECORD,
    (S.ACKED, S.EXPIRED): D.RECORD,
    (S.EXPIRED, S.EXPIRED): D.ALREADY,
}


@pytest.mark.parametrize("target", [S.DEAD_LETTERED, S.EXPIRED])
@pytest.mark.parametrize("state", list(MessageState))
def test_each_dead_letter_decision(state: MessageState, target: MessageState) -> None:
    """A dead letter is journaled along a legal path; an ACCEPTED one by way of QUEUED
    (the broker had it, so its publisher was not done journaling)."""
    action = on_dead_letter(state, target)
    assert action is DEAD_LETTER_TABLE[state, target]
    path = {D.RECORD: [target], D.QUEUE_AND_RECORD: [S.QUEUED, target]}.get(action, [])
    current = state
    for step in path:
        assert can_transition(current, step), (state, action, current, step)
        current = step
