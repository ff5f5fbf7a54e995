import itertools

import pytest

from gateway.core.service_lifecycle import (
    FINAL,
    REASONS,
    TRANSITIONS,
    CompletedBy,
    IllegalServiceTransition,
    ServiceState,
    can_transition,
    check_transition,
)

S = ServiceState
ALL = list(itertools.product(ServiceState, ServiceState, CompletedBy))
LEGAL = {(a, b, r) for a, targets in TRANSITIONS.items() for b in targets for r in REASONS[b]}


def test_tables_cover_every_state() -> None:
    assert set(TRANSITIONS) == set(ServiceState)
    assert set(REASONS) == set(ServiceState)


def test_expected_legal_moves() -> None:
    assert {
        (S.PENDING, S.COMPLETED, CompletedBy.ALL_ANSWERED),
        (S.PENDING, S.PARTIAL, CompletedBy.ALL_ANSWERED),
        (S.PENDING, S.PARTIAL, CompletedBy.DEADLINE),
        (S.PENDING, S.FAILED, CompletedBy.REQUIRED_REJECTED),
        (S.PENDING, S.TIMED_OUT, CompletedBy.DEADLINE),
        (S.PENDING, S.CANCELLED, CompletedBy.CANCELLED),
    } == LEGAL


@pytest.mark.parametrize(("current", "target", "reason"), ALL, ids=str)
def test_every_move_is_legal_or_raises(
    current: ServiceState, target: ServiceState, reason: CompletedBy
) -> None:
    if (current, target, reason) in LEGAL:
        assert can_transition(current, target, reason)
        assert check_transition(current, target, reason) is target
    else:
        assert not can_transition(current, target, reason)
        with pytest.raises(IllegalServiceTransition) as info:
            check_transition(current, target, reason)
        for word in (current, target, reason):
            assert str(word) in info.value.message


def test_final_states_are_everything_but_pending() -> None:
    assert set(ServiceState) - {S.PENDING} == FINAL
    assert all(not TRANSITIONS[s] for s in FINAL)


def test_every_reason_leads_somewhere() -> None:
    used = {r for reasons in REASONS.values() for r in reasons}
    assert used == set(CompletedBy)
