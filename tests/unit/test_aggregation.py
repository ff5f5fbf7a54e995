import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from gateway.core.aggregation import (
    Effect,
    PartStatus,
    ServiceRequestState,
    combine,
    new_service_request,
    next_deadline,
    on_answer,
    on_cancel,
    on_deadline,
    on_rejection,
    on_sent,
    part_for_message,
    pick,
)
from gateway.core.catalogue import Catalogue, parse_catalogue
from gateway.core.errors import InternalError, NotFound
from gateway.core.service_lifecycle import CompletedBy, ServiceState

CATALOGUE: Catalogue = parse_catalogue(
    (Path(__file__).resolve().parents[2] / "config" / "services.toml").read_text("utf-8")
)
T0 = datetime(2025, 1, 1, 12, 0, tzinfo=UTC)
RID = uuid.UUID("00000000-0000-4000-8000-000000000001")
BIRTH = {"BirthRecord": {"ActRecord": {"Number": "1201", "Date": "2019-03-20"}}}
REG = {"Registration": [{"Kind": "RESIDENCE"}, {"Kind": "STAY"}]}
INN = {"Inn": "710712345628"}


def at(seconds: float) -> datetime:
    return T0 + timedelta(seconds=seconds)


def cbb() -> ServiceRequestState:
    # Parts: birth-record (required, 5 min), parent-registration (required, 5 min),
    # parent-inn (optional, 2 min); service deadline 10 min.
    return new_service_request(RID, CATALOGUE.get("child-birth-benefit"), T0)


def test_new_request_fixes_deadlines() -> None:
    state = cbb()
    assert state.status is ServiceState.PENDING
    assert state.deadline_at == at(600)
    assert [(p.id, p.deadline_at) for p in state.parts] == [
        ("birth-record", at(300)),
        ("parent-registration", at(300)),
        ("parent-inn", at(120)),
    ]
    assert next_deadline(state) == at(120)


def test_all_answered_completes_with_combined_result() -> None:
    state = cbb()
    o1 = on_answer(state, "parent-inn", INN, at(1))
    o2 = on_answer(o1.state, "birth-record", BIRTH, at(2))
    o3 = on_answer(o2.state, "parent-registration", REG, at(3))
    assert [o.became_final for o in (o1, o2, o3)] == [False, False, True]
    final = o3.state
    assert (final.status, final.completed_by, final.completed_at) == (
        ServiceState.COMPLETED,
        CompletedBy.ALL_ANSWERED,
        at(3),
    )
    assert final.result == {
        "birth_act_number": "1201",
        "birth_act_date": "2019-03-20",
        "birth_place": None,
        "birth_not_found": None,
        "parent_registrations": REG["Registration"],
        "parent_registration_not_found": None,
        "parent_inn": "710712345628",
    }
    assert final.part("birth-record").replied_at == at(2)
    assert state.status is ServiceState.PENDING  # the input was not mutated
    assert next_deadline(final) is None


def test_required_rejection_fails_fast_and_names_the_part() -> None:
    o = on_rejection(cbb(), "parent-registration", "NO_DATA", "no such person", at(5))
    assert o.became_final
    assert (o.state.status, o.state.completed_by, o.state.failed_part) == (
        ServiceState.FAILED,
        CompletedBy.REQUIRED_REJECTED,
        "parent-registration",
    )
    rejection = o.state.part("parent-registration").rejection
    assert rejection is not None
    assert rejection.code == "NO_DATA"
    assert o.state.result is None


def test_optional_timeout_gives_partial_by_deadline() -> None:
    state = on_answer(cbb(), "birth-record", BIRTH, at(1)).state
    state = on_answer(state, "parent-registration", REG, at(2)).state
    assert next_deadline(state) == at(120)
    assert on_deadline(state, at(119)).effect is Effect.NO_CHANGE
    o = on_deadline(state, at(120))
    assert o.became_final
    assert (o.state.status, o.state.completed_by) == (ServiceState.PARTIAL, CompletedBy.DEADLINE)
    assert o.state.part("parent-inn").status is PartStatus.TIMED_OUT
    assert o.state.result is not None
    assert o.state.result["parent_inn"] is None


def test_optional_rejection_gives_partial_all_answered() -> None:
    state = on_rejection(cbb(), "parent-inn", "NO_DATA", "none", at(1)).state
    assert state.status is ServiceState.PENDING
    state = on_answer(state, "birth-record", BIRTH, at(2)).state
    o = on_answer(state, "parent-registration", REG, at(3))
    assert (o.state.status, o.state.completed_by) == (
        ServiceState.PARTIAL,
        CompletedBy.ALL_ANSWERED,
    )


def test_required_part_deadline_times_out_at_once() -> None:
    state = on_answer(cbb(), "birth-record", BIRTH, at(1)).state
    state = on_deadline(state, at(120)).state  # parent-inn times out; still waiting
    assert state.status is ServiceState.PENDING
    assert next_deadline(state) == at(300)
    o = on_deadline(state, at(300))
    assert (o.state.status, o.state.completed_by) == (ServiceState.TIMED_OUT, CompletedBy.DEADLINE)
    assert o.state.part("birth-record").data == BIRTH  # answered parts are kept


def test_service_deadline_with_required_answered_is_partial() -> None:
    svc = CATALOGUE.get("child-birth-benefit")
    state = new_service_request(RID, svc, T0)
    state = on_answer(state, "birth-record", BIRTH, at(1)).state
    state = on_answer(state, "parent-registration", REG, at(2)).state
    o = on_deadline(state, at(600))
    assert o.state.status is ServiceState.PARTIAL


def test_late_replies_do_not_change_a_final_result() -> None:
    failed = on_rejection(cbb(), "birth-record", "FAILURE", "down", at(1)).state
    for o in (
        on_answer(failed, "parent-registration", REG, at(2)),
        on_rejection(failed, "parent-inn", "NO_DATA", "x", at(2)),
        on_cancel(failed, at(3)),
    ):
        assert (o.effect, o.became_final, o.state) == (Effect.LATE, False, failed)
    assert on_deadline(failed, at(1000)).state is failed


def test_repeated_reply_for_a_part_is_no_change() -> None:
    state = on_answer(cbb(), "birth-record", BIRTH, at(1)).state
    o = on_rejection(state, "birth-record", "FAILURE", "redelivered", at(2))
    assert (o.effect, o.state) == (Effect.NO_CHANGE, state)


def test_cancel() -> None:
    o = on_cancel(cbb(), at(4))
    assert (o.state.status, o.state.completed_by, o.became_final) == (
        ServiceState.CANCELLED,
        CompletedBy.CANCELLED,
        True,
    )


def test_correlation_by_message_id() -> None:
    mid = uuid.uuid1()
    state = on_sent(cbb(), "parent-inn", mid, at(0.5))
    assert part_for_message(state, mid) == "parent-inn"
    assert state.part("parent-inn").sent_at == at(0.5)
    with pytest.raises(NotFound):
        part_for_message(state, uuid.uuid1())
    with pytest.raises(InternalError, match="no part 'nope'"):
        on_answer(state, "nope", {}, at(1))


def test_two_parts_of_one_type_in_marriage_check() -> None:
    state = new_service_request(RID, CATALOGUE.get("marriage-registration-check"), T0)
    state = on_answer(state, "marriage-record", {"MarriageRecord": {}}, at(1)).state
    state = on_answer(state, "husband-passport", {"Status": "VALID"}, at(2)).state
    o = on_answer(state, "wife-passport", {"Status": "LOST"}, at(3))
    assert o.state.status is ServiceState.COMPLETED
    assert o.state.result is not None
    assert (o.state.result["husband_passport_status"], o.state.result["wife_passport_status"]) == (
        "VALID",
        "LOST",
    )


def test_pick() -> None:
    assert pick({"A": [{"B": "1"}, {"B": "2"}, {"C": "3"}]}, "A/B") == ["1", "2"]
    assert pick({"A": [{"C": "3"}]}, "A/B") is None
    assert pick({"A": "x"}, "A/B") is None
    assert combine(cbb())["parent_inn"] is None


# --- any order of events ends final exactly once --------------------------------

PARTS = ["birth-record", "parent-registration", "parent-inn"]
EVENT = st.one_of(
    st.tuples(st.just("answer"), st.sampled_from(PARTS)),
    st.tuples(st.just("reject"), st.sampled_from(PARTS)),
    st.tuples(st.just("deadline"), st.sampled_from([None])),
    st.tuples(st.just("cancel"), st.sampled_from([None])),
)


@settings(max_examples=300, deadline=None)
@given(events=st.lists(st.tuples(EVENT, st.integers(min_value=1, max_value=400)), max_size=12))
def test_any_order_of_events_is_final_at_most_once_and_then_frozen(
    events: list[tuple[tuple[str, str | None], int]],
) -> None:
    state = cbb()
    finals = 0
    clock = 0
    for (kind, part), step in events:
        clock += step
        now = at(clock)
        if kind == "answer":
            assert part is not None
            o = on_answer(state, part, {"x": "1"}, now)
        elif kind == "reject":
            assert part is not None
            o = on_rejection(state, part, "NO_DATA", "none", now)
        elif kind == "deadline":
            o = on_deadline(state, now)
        else:
            o = on_cancel(state, now)
        if state.final:
            assert o.state == state
            assert not o.became_final
        finals += o.became_final
        assert o.became_final == (not state.final and o.state.final)
        state = o.state
    # The service deadline always ends it.
    o = on_deadline(state, at(clock + 600))
    finals += o.became_final
    assert o.state.final
    assert finals == 1
    final = o.state
    required = [p for p in final.parts if p.required]
    if final.status is ServiceState.COMPLETED:
        assert all(p.status is PartStatus.ANSWERED for p in final.parts)
    if final.status is ServiceState.PARTIAL:
        assert all(p.status is PartStatus.ANSWERED for p in required)
    if final.status is ServiceState.FAILED:
        assert final.failed_part is not None
        assert final.part(final.failed_part).status is PartStatus.REJECTED
    if final.status is ServiceState.TIMED_OUT:
        assert any(p.status is PartStatus.TIMED_OUT for p in required)
