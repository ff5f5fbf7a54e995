"""Per-key locks: one holder per key, keys independent, nothing kept when released."""

from __future__ import annotations

import asyncio

from gateway.aggregator.keyed_locks import KeyedLocks


async def test_one_holder_per_key_and_keys_are_independent() -> None:
    locks = KeyedLocks()
    order: list[str] = []
    a_held = asyncio.Event()
    release_a = asyncio.Event()

    async def first() -> None:
        async with locks.hold("a"):
            order.append("a1 in")
            a_held.set()
            await release_a.wait()
            order.append("a1 out")

    async def second() -> None:
        async with locks.hold("a"):
            order.append("a2 in")

    holder = asyncio.create_task(first())
    await a_held.wait()
    waiter = asyncio.create_task(second())
    async with locks.hold("b"):  # another key is free while "a" is held
        order.append("b in")
    release_a.set()
    await asyncio.gather(holder, waiter)

    assert order == ["a1 in", "b in", "a1 out", "a2 in"]
    assert len(locks) == 0


async def test_a_failing_holder_releases_its_key() -> None:
    locks = KeyedLocks()
    try:
        async with locks.hold("a"):
            raise RuntimeError("boom")
    except RuntimeError:
        pass
    async with locks.hold("a"):
        assert len(locks) == 1
    assert len(locks) == 0
