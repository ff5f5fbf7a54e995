"""Time and identity sources, injectable so that tests control them."""

from __future__ import annotations

import os
import threading
import uuid
from datetime import UTC, datetime, timedelta
from typing import Protocol

# Offset between the UUID epoch (1582-10-15) and the Unix epoch, in 100 ns ticks.
_UUID_EPOCH_OFFSET = 0x01B21DD213814000


class Clock(Protocol):
    def now(self) -> datetime:
        """The current time, timezone-aware (UTC)."""
        ...


class SystemClock:
    def now(self) -> datetime:
        return datetime.now(UTC)


class FakeClock:
    """A clock that only moves when told to; for tests and deterministic demos."""

    def __init__(self, start: datetime | None = None) -> None:
        self._now = start or datetime(2026, 1, 1, tzinfo=UTC)

    def now(self) -> datetime:
        return self._now

    def advance(self, delta: timedelta) -> None:
        self._now += delta

    def set(self, when: datetime) -> None:
        self._now = when


class MessageIdSource:
    """UUID v1 MessageIDs (time-ordered, as SMEV 3) from an injectable clock.

    Unlike :func:`uuid.uuid1` this takes its time from ``clock`` and never leaks the
    host's MAC address: the node is random per source, with the multicast bit set
    as RFC 4122 asks for random nodes. A counter keeps IDs unique and increasing
    when the clock does not move between calls.
    """

    def __init__(self, clock: Clock, node: int | None = None) -> None:
        self._clock = clock
        self._node = node if node is not None else int.from_bytes(os.urandom(6)) | (1 << 40)
        self._clock_seq = int.from_bytes(os.urandom(2)) & 0x3FFF
        self._last = 0
        self._lock = threading.Lock()

    def new(self) -> uuid.UUID:
        ticks = uuid_ticks_from_datetime(self._clock.now())
        with self._lock:
            ticks = max(ticks, self._last + 1)
            self._last = ticks
        return uuid.UUID(
            fields=(
                ticks & 0xFFFFFFFF,
                (ticks >> 32) & 0xFFFF,
                ((ticks >> 48) & 0x0FFF) | 0x1000,
                ((self._clock_seq >> 8) & 0x3F) | 0x80,
                self._clock_seq & 0xFF,
                self._node,
            )
        )


def uuid_ticks_from_datetime(when: datetime) -> int:
    delta = when - datetime(1970, 1, 1, tzinfo=UTC)
    micros = (delta.days * 86_400 + delta.seconds) * 1_000_000 + delta.microseconds
    return micros * 10 + _UUID_EPOCH_OFFSET


def uuid1_time(message_id: uuid.UUID) -> datetime:
    """The creation time a UUID v1 carries; raises ValueError for other versions."""
    if message_id.version != 1:
        raise ValueError(f"{message_id} is not a UUID version 1")
    micros = (message_id.time - _UUID_EPOCH_OFFSET) // 10
    return datetime(1970, 1, 1, tzinfo=UTC) + timedelta(microseconds=micros)
