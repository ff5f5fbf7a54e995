"""What recording the metrics costs a message: round trips with the recording live
against the same round trips with every recording helper replaced by a no-op, and the
cost of one helper call.

In one process on the in-process bus (:mod:`gateway.testing.bus`: memory transport,
in-memory SQLite journal, the session's ECDSA dev PKI): a round trip is PORTAL
SendRequest -> ZAGS GetRequest -> SendResponse -> Ack -> PORTAL GetResponse -> Ack,
six signed SOAP exchanges through ``Router.handle``. The two variants run interleaved
in rounds, each going first in every other round, so load from elsewhere and the
growing journal hit both alike; the figure is the median per round trip and the ratio
live / no-op.

Run: .venv/bin/python benchmarks/metrics.py [--round-trips 300] [--rounds 5]
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from gateway.ops import metrics  # noqa: E402
from gateway.ops.metrics import MessageOutcome, Stage  # noqa: E402
from gateway.testing.bus import Bus, open_bus, round_trip  # noqa: E402

#: The helpers the message path calls.
HELPERS = ("observe_stage", "count_message", "count_fault")


@contextmanager
def recording_off() -> Iterator[None]:
    """Every helper the message path calls replaced by a no-op, then put back."""
    saved = {name: getattr(metrics, name) for name in HELPERS}
    for name in HELPERS:
        setattr(metrics, name, lambda *_args, **_kw: None)
    try:
        yield
    finally:
        for name, helper in saved.items():
            setattr(metrics, name, helper)


async def timed(bus: Bus, n: int) -> float:
    """Seconds per round trip over ``n`` of them."""
    began = time.perf_counter()
    for _ in range(n):
        await round_trip(bus)
    return (time.perf_counter() - began) / n


def per_call(call: Callable[[], None], n: int = 200_000) -> float:
    began = time.perf_counter()
    for _ in range(n):
        call()
    return (time.perf_counter() - began) / n


async def main(round_trips: int, rounds: int) -> None:
    bus = await open_bus()
    try:
        await timed(bus, 20)  # warm up: schemas, keys, SQLite pages
        live, off = [], []
        for n in range(rounds):
            # Which goes first alternates: the journal grows as they run.
            for first in (n % 2 == 0, n % 2 == 1):
                if first:
                    live.append(await timed(bus, round_trips))
                else:
                    with recording_off():
                        off.append(await timed(bus, round_trips))
    finally:
        await bus.close()
    live_s, off_s = statistics.median(live), statistics.median(off)
    print(f"round trip (6 SOAP exchanges), median of {rounds} rounds of {round_trips}:")
    print(f"  recording off  {off_s * 1e3:8.3f} ms")
    print(f"  recording live {live_s * 1e3:8.3f} ms   ratio {live_s / off_s:.3f}")
    stage = per_call(lambda: metrics.observe_stage(Stage.PARSE, 0.001))
    message = per_call(
        lambda: metrics.count_message("urn:t", "PORTAL", "ZAGS", MessageOutcome.ACCEPTED)
    )
    print("one helper call:")
    print(f"  observe_stage  {stage * 1e6:8.2f} us")
    print(f"  count_message  {message * 1e6:8.2f} us")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--round-trips", type=int, default=300)
    parser.add_argument("--rounds", type=int, default=5)
    args = parser.parse_args()
    asyncio.run(main(args.round_trips, args.rounds))
