import pytest

from adapters.sdk.policies import PollPolicy, RetryPolicy
from gateway.core import backoff
from gateway.transport.base import redelivery_pause


def test_exponential_doubles_from_the_first_failure_up_to_the_cap() -> None:
    schedule = backoff.exponential(0.1, cap=1.0)
    assert [backoff.delay(schedule, n) for n in range(1, 7)] == pytest.approx(
        [0.1, 0.2, 0.4, 0.8, 1.0, 1.0]
    )
    assert backoff.delay(schedule, 0) == backoff.delay(schedule, 1)
    assert backoff.delay(schedule, 10**6) == 1.0  # no overflow far out


def test_stepped_repeats_its_last_step() -> None:
    schedule = backoff.stepped((0.5, 2.0, 5.0))
    assert [backoff.delay(schedule, n) for n in range(1, 6)] == [0.5, 2.0, 5.0, 5.0, 5.0]
    assert backoff.delay(backoff.stepped(()), 3) == 0.0


def test_the_schedules_in_use() -> None:
    assert [redelivery_pause(n) for n in (1, 2, 7, 8)] == pytest.approx([0.1, 0.2, 5.0, 5.0])
    assert [RetryPolicy().delay(n) for n in (1, 2, 3, 4)] == [0.5, 2.0, 5.0, 5.0]
    poll = PollPolicy(interval=0.5, max_interval=3.0, factor=3.0)
    assert [poll.delay(n) for n in (0, 1, 2, 3)] == [0.5, 0.5, 1.5, 3.0]
