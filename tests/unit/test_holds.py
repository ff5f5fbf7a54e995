"""A provider's answer held while its reply waits for others (:mod:`gateway.router.holds`)."""

from __future__ import annotations

import asyncio

import pytest

from gateway.router.holds import AnswerHolds
from gateway.router.sent import SentRequests
from tests.unit.test_sent import request

pytestmark = pytest.mark.asyncio

WAIT = 10.0  # seconds; bounds only a failure


async def started() -> None:
    """Let the holds just created run until they wait."""
    for _ in range(3):
        await asyncio.sleep(0)


async def test_an_answer_waits_until_its_turn_lets_it_go() -> None:
    holds = AnswerHolds(SentRequests())
    answerable = asyncio.Event()
    hold = asyncio.create_task(holds.hold("ZAGS", answerable, WAIT))
    await started()
    assert not hold.done()
    answerable.set()
    await asyncio.wait_for(hold, WAIT)


async def test_an_answer_is_not_held_while_its_provider_has_a_request_to_answer() -> None:
    sent = SentRequests()
    sent.keep(request("1"))  # to ZAGS
    holds = AnswerHolds(sent)
    await asyncio.wait_for(holds.hold("ZAGS", asyncio.Event(), 3600), WAIT)


async def test_a_request_queued_to_the_provider_lets_its_answers_go() -> None:
    holds = AnswerHolds(SentRequests())
    answerable = asyncio.Event()
    other = asyncio.Event()
    zags = asyncio.create_task(holds.hold("ZAGS", answerable, 3600))
    mvd = asyncio.create_task(holds.hold("MVD", other, 3600))
    await started()
    holds.release("ZAGS")
    await asyncio.wait_for(zags, WAIT)
    await started()
    assert not mvd.done()  # another provider's answer still waits
    holds.release("MVD")
    await asyncio.wait_for(mvd, WAIT)


async def test_an_answer_is_held_no_longer_than_the_window() -> None:
    holds = AnswerHolds(SentRequests())
    answerable = asyncio.Event()
    await asyncio.wait_for(holds.hold("ZAGS", answerable, 0.001), WAIT)
    assert not answerable.is_set()
    holds.release("ZAGS")  # nothing held any more: nothing to let go


async def test_without_a_window_an_answer_is_not_held() -> None:
    holds = AnswerHolds(SentRequests())
    await asyncio.wait_for(holds.hold("ZAGS", asyncio.Event(), 0), WAIT)
