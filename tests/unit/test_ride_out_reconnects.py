"""How an AMQP operation rides out a lost connection: each attempt bounded, retried while
the reconnect budget lasts, then refused as unavailable (``amqp_publish.ride_out_reconnects``)."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable

import pytest

from gateway.transport.amqp_lane import LaneClosed, NotFound
from gateway.transport.amqp_publish import ride_out_reconnects
from gateway.transport.errors import TransportUnavailable


class Channel:
    """A channel as far as the helper looks at it: ready, or reopening."""

    def __init__(self, *, ready: bool = True) -> None:
        self.reopened = asyncio.Event()
        if ready:
            self.reopened.set()

    async def ready(self) -> None:
        await self.reopened.wait()


def channel(*, ready: bool = True) -> Callable[[], Awaitable[None]]:
    return Channel(ready=ready).ready


async def test_an_attempt_that_is_never_answered_is_cut_at_its_cap_and_made_again() -> None:
    attempts: list[float] = []

    async def never_answered(seconds_left: float) -> None:
        attempts.append(seconds_left)
        await asyncio.Future()  # a basic.get lost with its connection

    with pytest.raises(TransportUnavailable, match="get from q"):
        await ride_out_reconnects(channel(), 0.5, never_answered, "get from q", attempt_cap=0.05)
    # Without the cap the first attempt would have held the whole budget.
    assert len(attempts) >= 2
    assert attempts[0] > attempts[-1]  # each attempt is told the time left


async def test_a_channel_that_does_not_reopen_in_time_is_unavailable() -> None:
    ran = False

    async def publish(seconds_left: float) -> None:
        nonlocal ran
        ran = True

    with pytest.raises(TransportUnavailable, match="publish"):
        await ride_out_reconnects(channel(ready=False), 0.2, publish, "publish")
    assert not ran


async def test_a_transient_failure_is_tried_again_and_the_answer_returned() -> None:
    failures = [LaneClosed("channel closed")]

    async def get(seconds_left: float) -> str:
        if failures:
            raise failures.pop()
        return "message"

    assert await ride_out_reconnects(channel(), 5.0, get, "get from q") == "message"


async def test_a_failure_no_reconnect_cures_passes_through_at_once() -> None:
    attempts = 0

    async def refused(seconds_left: float) -> None:
        nonlocal attempts
        attempts += 1
        raise NotFound("no exchange x")

    with pytest.raises(NotFound):
        await ride_out_reconnects(channel(), 5.0, refused, "publish")
    assert attempts == 1
