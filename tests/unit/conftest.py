"""Fixtures the unit tests share."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest

from gateway.testing.bus import Bus, open_bus


@pytest.fixture
async def bus() -> AsyncIterator[Bus]:
    """The whole bus in memory (memory transport, SQLite journal, a fake clock)."""
    b = await open_bus()
    try:
        yield b
    finally:
        await b.close()
