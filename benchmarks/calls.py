"""Python calls the gateway makes per round trip: a deterministic measure of its CPU.

The whole bus in this process as ``floor_census.py`` runs it
(:func:`gateway.testing.bus.open_bus`, memory transport, the journal on a fresh
PostgreSQL database, or SQLite with ``--sqlite``), driven one round trip at a time:
``--round-trips`` pull round trips (SendRequest, GetRequest, SendResponse, Ack,
GetResponse, Ack) after a warm-up, then as many push ones (SendRequest, SendResponse,
GetResponse, Ack; the provider consumes its queue itself). Every SOAP call goes through
the ``POST /ws`` ASGI app (:class:`~gateway.api.soap_endpoint.SoapEndpoint`) in front of
the router, as ``smevbus serve`` has it (the HTTP server itself is not here).

cProfile runs only while the gateway's coroutine of a SOAP call runs: each of its
steps between two suspensions, not the event loop, the database driver's protocol
callbacks or the clients (their signing, parsing and checking are theirs). So the
count does not depend on timing: the same code gives the same calls, and a cut that
removes work shows as fewer calls. Printed per round trip of each mode: all calls,
primitive (non-recursive) calls, and the top functions by own time and by calls.

With ``--cpu PASSES`` the same runs are made again without the profiler, each on a
fresh bus, and the thread CPU of the same steps is printed per round trip: the least
over the passes (other load on the host only adds).

Run: .venv/bin/python benchmarks/calls.py [--round-trips 500] [--top 25] [--sqlite]
[--cpu PASSES] [--dump PREFIX]
"""

from __future__ import annotations

import argparse
import asyncio
import cProfile
import pstats
import sys
import time
from collections.abc import Awaitable, Callable, Coroutine, Generator, MutableMapping
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from benchmarks.floor_census import _each_mode  # noqa: E402
from benchmarks.harness import database_url  # noqa: E402
from gateway.api.app import ENVELOPE_OVERHEAD  # noqa: E402
from gateway.api.soap_endpoint import SoapEndpoint  # noqa: E402
from gateway.store import open_stores  # noqa: E402
from gateway.testing import bus as testing_bus  # noqa: E402
from gateway.testing.processes import fresh_database  # noqa: E402

WARMUP = 20


class _Stepwise:
    """Awaits ``coroutine`` with ``on()`` before each of its steps and ``off()`` after."""

    def __init__(
        self, coroutine: Coroutine[Any, Any, Any], on: Callable[[], Any], off: Callable[[], Any]
    ) -> None:
        self.coroutine = coroutine
        self.on = on
        self.off = off

    def __await__(self) -> Generator[Any, Any, Any]:
        coroutine, on, off = self.coroutine, self.on, self.off
        value: Any = None
        error: BaseException | None = None
        while True:
            on()
            try:
                step = coroutine.send(value) if error is None else coroutine.throw(error)
            except StopIteration as stop:
                off()
                return stop.value
            except BaseException:
                off()
                raise
            off()
            try:
                value, error = (yield step), None
            except BaseException as exc:  # handed to the coroutine
                value, error = None, exc


class Meter:
    """The ``POST /ws`` app in front of the bus, profiled (or its CPU read, with
    ``cpu``) while a mode runs."""

    def __init__(self, cpu: bool = False) -> None:
        self.cpu = cpu
        self.profile: cProfile.Profile | None = None
        self.on = False
        self.began = 0
        self.ns = 0

    def start(self) -> None:
        self.on = True
        self.ns = 0
        if not self.cpu:
            self.profile = cProfile.Profile()

    def stop(self) -> pstats.Stats | int:
        self.on = False
        if self.profile is None:
            return self.ns
        stats = pstats.Stats(self.profile)
        self.profile = None
        return stats

    def _tick(self) -> None:
        self.began = time.thread_time_ns()

    def _tock(self) -> None:
        self.ns += time.thread_time_ns() - self.began

    def handle_through_endpoint(
        self, bus: testing_bus.Bus
    ) -> Callable[[bytes], Awaitable[tuple[int, bytes]]]:
        endpoint = SoapEndpoint(lambda: bus.root.handle, limit=5 * 1024 * 1024 + ENVELOPE_OVERHEAD)

        async def handle(raw: bytes) -> tuple[int, bytes]:
            sent: list[MutableMapping[str, Any]] = []
            scope = {
                "type": "http",
                "method": "POST",
                "path": "/ws",
                "headers": [
                    (b"host", b"127.0.0.1"),
                    (b"content-type", b"text/xml; charset=utf-8"),
                    (b"content-length", str(len(raw)).encode()),
                ],
            }

            async def receive() -> dict[str, Any]:
                return {"type": "http.request", "body": raw, "more_body": False}

            async def send(message: MutableMapping[str, Any]) -> None:
                sent.append(message)

            call = endpoint(scope, receive, send)
            if not self.on:
                await call
            elif self.profile is not None:
                await _Stepwise(call, self.profile.enable, self.profile.disable)
            else:
                await _Stepwise(call, self._tick, self._tock)
            status: int = sent[0]["status"]
            body: bytes = sent[1]["body"]
            result = (status, body)
            bus.exchanges.append((raw, result))
            testing_bus.check_against_served_schema(body)
            return result

        return handle


async def measure(url: str, n: int, *, cpu: bool = False) -> dict[str, Any]:
    """Per mode: the profile of ``n`` round trips, or with ``cpu`` the CPU ns of the
    gateway's steps over them."""
    meter = Meter(cpu)
    stats: dict[str, Any] = {}
    current: list[str] = []
    stores = open_stores(url)
    bus = await testing_bus.open_bus(journal=stores.journal)
    try:
        handle = meter.handle_through_endpoint(bus)
        for client in bus.clients.values():
            client._call = handle

        def between(mode: str) -> None:
            if current:
                stats[current.pop()] = meter.stop()
            if mode:
                current.append(mode)
                meter.start()

        await _each_mode(bus, n, between, warmup=WARMUP)
    finally:
        await bus.close()
    return stats


def report(mode: str, stats: pstats.Stats, n: int, top: int) -> None:
    raw: dict[Any, Any] = stats.stats  # type: ignore[attr-defined]
    total = sum(nc for _, nc, _, _, _ in raw.values())
    primitive = sum(cc for cc, _, _, _, _ in raw.values())
    print(f"\n== {mode}: {total / n:.1f} calls per round trip ({primitive / n:.1f} primitive)")

    def name(key: tuple[str, int, str]) -> str:
        file, line, fn = key
        if file == "~":
            return fn
        for marker in ("/site-packages/", str(ROOT) + "/"):
            if marker in file:
                file = file.split(marker, 1)[1]
        return f"{file}:{line}({fn})"

    rows = [(key, cc, nc, tt, ct) for key, (cc, nc, tt, ct, _) in raw.items()]
    print(f"-- top {top} by own time (ms per 100 round trips, calls per round trip)")
    for key, _, nc, tt, _ in sorted(rows, key=lambda r: -r[3])[:top]:
        print(f"{tt * 1e5 / n:8.2f} {nc / n:8.1f}  {name(key)}")
    print(f"-- top {top} by calls per round trip")
    for key, _, nc, tt, _ in sorted(rows, key=lambda r: -r[2])[:top]:
        print(f"{nc / n:8.1f} {tt * 1e5 / n:8.2f}  {name(key)}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--round-trips", type=int, default=500)
    parser.add_argument("--top", type=int, default=25)
    parser.add_argument("--sqlite", action="store_true", help="journal on in-memory SQLite")
    parser.add_argument("--dump", type=Path, help="write each mode's pstats to DUMP.<mode>")
    parser.add_argument(
        "--cpu",
        type=int,
        default=0,
        metavar="PASSES",
        help="also PASSES more runs without the profiler, each on a fresh bus: the CPU "
        "of the gateway's steps per round trip (thread time; the least of the passes)",
    )
    args = parser.parse_args()
    n = args.round_trips

    def run(cpu: bool) -> dict[str, Any]:
        if args.sqlite:
            return asyncio.run(measure("sqlite://", n, cpu=cpu))
        with fresh_database(database_url()) as url:
            return asyncio.run(measure(url, n, cpu=cpu))

    stats = run(False)
    for mode in ("pull", "push"):
        report(mode, stats[mode], n, args.top)
        if args.dump:
            stats[mode].dump_stats(f"{args.dump}.{mode}")
    if args.cpu:
        passes = [run(True) for _ in range(args.cpu)]
        print()
        for mode in ("pull", "push"):
            each = sorted(p[mode] / n / 1000 for p in passes)
            shown = ", ".join(f"{us:.0f}" for us in each)
            print(f"== {mode}: {each[0]:.0f} us CPU per round trip (passes: {shown})")


if __name__ == "__main__":
    main()
