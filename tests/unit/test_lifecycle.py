import itertools

import pytest

from gateway.core.lifecycle import (
    TERMINAL,
    TRANSITIONS,
    IllegalTransition,
    MessageState,
    can_transition,
    check_transition,
)

LEGAL = {(a, b) for a, targets in TRANSITIONS.items() for b in targets}
ALL_PAIRS = list(itertools.product(MessageState, MessageState))


def test_table_covers_every_state() -> None:
    assert set(TRANSITIONS) == set(MessageState)


@pytest.mark.parametrize(("current", "target"), ALL_PAIRS, ids=lambda s: str(s))
def test_every_pair_is_legal_or_raises(current: MessageState, target: MessageState) -> None:
    if (current, target) in LEGAL:
        assert can_transition(current, target)
        assert check_transition(current, target) is target
    else:
        assert not can_transition(current, target)
        with pytest.raises(IllegalTransition) as info:
            check_transition(current, target)
        assert str(current) in info.value.message
        assert str(target) in info.value.message


def test_happy_path_of_a_request_is_legal() -> None:
    path = [
        MessageState.ACCEPTED,
        MessageState.QUEUED,
        MessageState.DELIVERED,
        MessageState.ACKED,
        MessageState.RESPONDED,
        MessageState.RESPONSE_DELIVERED,
    ]
    for a, b in itertools.pairwise(path):
        check_transition(a, b)


def test_every_state_is_reachable_from_accepted() -> None:
    seen = {MessageState.ACCEPTED}
    frontier = [MessageState.ACCEPTED]
    while frontier:
        for nxt in TRANSITIONS[frontier.pop()]:
            if nxt not in seen:
                seen.add(nxt)
                frontier.append(nxt)
    assert seen == set(MessageState)


def test_terminal_states() -> None:
    assert {
        MessageState.RESPONSE_DELIVERED,
        MessageState.REJECTED,
        MessageState.FAILED,
        MessageState.PURGED,
    } == TERMINAL
    # Dead letters are not terminal: an operator may replay them.
    assert can_transition(MessageState.DEAD_LETTERED, MessageState.QUEUED)
    # Expired and dead letters leave the dead-letter queue only when an operator purges.
    assert can_transition(MessageState.DEAD_LETTERED, MessageState.PURGED)
    assert can_transition(MessageState.EXPIRED, MessageState.PURGED)
