import uuid
from datetime import UTC, datetime, timedelta

import pytest
from hypothesis import given
from hypothesis import strategies as st

from gateway.core.clock import FakeClock, MessageIdSource, uuid1_time


def test_message_ids_are_v1_and_carry_the_clock_time() -> None:
    clock = FakeClock(datetime(2026, 11, 26, 12, 0, tzinfo=UTC))
    ids = MessageIdSource(clock)
    mid = ids.new()
    assert mid.version == 1
    assert mid.variant == uuid.RFC_4122
    assert uuid1_time(mid) == clock.now()


def test_ids_are_unique_and_increasing_when_the_clock_stands_still() -> None:
    ids = MessageIdSource(FakeClock())
    made = [ids.new() for _ in range(1000)]
    assert len(set(made)) == 1000
    assert [m.time for m in made] == sorted(m.time for m in made)


def test_node_is_not_the_host_mac() -> None:
    mid = MessageIdSource(FakeClock()).new()
    assert mid.node & (1 << 40), "random nodes must set the multicast bit"


@given(st.datetimes(min_value=datetime(2000, 1, 1), max_value=datetime(2100, 1, 1)))
def test_time_round_trips(when: datetime) -> None:
    when = when.replace(tzinfo=UTC)
    mid = MessageIdSource(FakeClock(when)).new()
    assert uuid1_time(mid) == when


def test_uuid1_time_refuses_other_versions() -> None:
    with pytest.raises(ValueError, match="version 1"):
        uuid1_time(uuid.uuid4())


def test_fake_clock_advances() -> None:
    clock = FakeClock()
    start = clock.now()
    clock.advance(timedelta(seconds=5))
    assert clock.now() - start == timedelta(seconds=5)
