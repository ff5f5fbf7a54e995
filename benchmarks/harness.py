"""What every benchmark shares: rows of latencies, percentiles and the table they print,
the drivers that fill them, process CPU and RSS (psutil), where the services are, and
the issue's targets with ``--json PATH`` and ``--check``.

A benchmark builds a dict of figures (the keys in ``benchmarks/README.md``) and hands
it to :func:`finish`: it writes the JSON, prints each target the figures reach with
its verdict, and with ``--check`` exits 1 when one is missed.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import sys
import time
from collections.abc import Awaitable, Callable, Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import psutil

DEFAULT_AMQP_URL = "amqp://guest:guest@127.0.0.1:5672/"
DEFAULT_DATABASE_URL = "postgresql://postgres@127.0.0.1:5432/test"


def amqp_url() -> str:
    """The RabbitMQ to run on: ``SMEVBUS_AMQP_URL`` (each run takes a fresh vhost on it)."""
    return os.environ.get("SMEVBUS_AMQP_URL", DEFAULT_AMQP_URL)


def database_url() -> str:
    """The PostgreSQL to run on: ``SMEVBUS_DATABASE_URL`` (each run creates a fresh
    database on that server and drops it afterwards)."""
    return os.environ.get("SMEVBUS_DATABASE_URL", DEFAULT_DATABASE_URL)


# --- rows ------------------------------------------------------------------------------


def percentile(values: Iterable[float], p: float) -> float:
    """The ``p``-th percentile by nearest rank (the value below which ``p`` % lie)."""
    ordered = sorted(values)
    if not ordered:
        return float("nan")
    return ordered[min(len(ordered) - 1, int(p / 100 * len(ordered)))]


@dataclass
class Result:
    """One row: latencies of ``concurrency`` callers over ``seconds`` of wall time."""

    name: str
    latencies_ms: list[float] = field(default_factory=list)
    seconds: float = 0.0
    concurrency: int = 1
    #: CPU seconds this (client) process spent on the row.
    cpu_s: float = 0.0
    #: CPU seconds the gateway process (and its workers) spent on it, where measured.
    gateway_cpu_s: float = 0.0
    #: CPU seconds other processes spent during its calls, by role (``interleaved``).
    others_cpu_s: dict[str, float] = field(default_factory=dict)

    @property
    def n(self) -> int:
        return len(self.latencies_ms)

    @property
    def label(self) -> str:
        """The name, with the concurrency when rows of one name differ by it."""
        return self.name if self.concurrency == 1 else f"{self.name}, C={self.concurrency}"

    @property
    def rate(self) -> float:
        """Calls per second (0 when no time was recorded)."""
        return self.n / self.seconds if self.seconds else 0.0

    def pct(self, p: float) -> float:
        return percentile(self.latencies_ms, p)

    @property
    def cpu_ms(self) -> float:
        """This process's CPU per call, ms."""
        return self.per_call_ms(self.cpu_s)

    def per_call_ms(self, cpu_seconds: float) -> float:
        """``cpu_seconds`` spread over the row's calls, in ms each."""
        return cpu_seconds * 1000 / self.n if self.n else float("nan")

    def record(self, seconds: float) -> None:
        """One call that took ``seconds`` (rows of calls made one at a time)."""
        self.latencies_ms.append(seconds * 1000)
        self.seconds += seconds


def table(rows: Iterable[Result], *, width: int = 32, unit: str = "calls/s") -> str:
    """The rows as a table: name, concurrency, n, p50 and p99 in ms, rate."""
    header = f"{'pipeline':<{width}}{'C':>4}{'n':>7}{'p50 ms':>10}{'p99 ms':>10}{unit:>15}"
    lines = [header, "-" * len(header)]
    for row in rows:
        rate = f"{row.rate:>15.1f}" if row.seconds else f"{'-':>15}"
        lines.append(
            f"{row.name:<{width}}{row.concurrency:>4}{row.n:>7}"
            f"{row.pct(50):>10.2f}{row.pct(99):>10.2f}{rate}"
        )
    lines.append("-" * len(header))
    return "\n".join(lines)


async def drive(
    name: str,
    n: int,
    concurrency: int,
    one: Callable[[], Awaitable[object]],
    *,
    warmup: int = 0,
) -> Result:
    """``n`` calls of ``one`` spread over ``concurrency`` workers, after ``warmup`` calls
    not counted (at most ``n``); the row holds this process's CPU over the timed part."""
    for _ in range(min(warmup, n)):
        await one()
    row = Result(name, concurrency=concurrency)
    left = n

    async def worker() -> None:
        nonlocal left
        while left > 0:
            left -= 1
            began = time.perf_counter()
            await one()
            row.latencies_ms.append((time.perf_counter() - began) * 1000)

    start, cpu = time.perf_counter(), time.process_time()
    await asyncio.gather(*(worker() for _ in range(concurrency)))
    row.seconds = time.perf_counter() - start
    row.cpu_s = time.process_time() - cpu
    return row


async def interleaved(
    names: list[str],
    n: int,
    ones: list[Callable[[], Awaitable[object]]],
    *,
    warmup: int = 5,
    budget: float | None = None,
    meter: Callable[[], Mapping[str, float]] | None = None,
) -> list[Result]:
    """One row per call, measured in turn (one call of each per step) so that load from
    elsewhere on a shared machine hits every row alike; no new step after ``budget``
    seconds. Each row holds this process's CPU over its own calls and, with ``meter``
    (CPU seconds used so far by other processes, by role), theirs in ``others_cpu_s``:
    read just before and after each call, outside its timing."""
    for _ in range(min(warmup, n)):
        for one in ones:
            await one()
    rows = [Result(name) for name in names]
    deadline = None if budget is None else time.perf_counter() + budget
    for _ in range(n):
        if deadline is not None and time.perf_counter() > deadline:
            break
        for row, one in zip(rows, ones, strict=True):
            others = {} if meter is None else meter()
            began, began_cpu = time.perf_counter(), time.process_time()
            await one()
            row.record(time.perf_counter() - began)
            row.cpu_s += time.process_time() - began_cpu
            if meter is not None:
                for role, seconds in meter().items():
                    used = seconds - others.get(role, 0.0)
                    row.others_cpu_s[role] = row.others_cpu_s.get(role, 0.0) + used
    return rows


# --- processes -------------------------------------------------------------------------


def family(pid: int) -> list[psutil.Process]:
    """Process ``pid`` and its descendants (``serve --workers N`` forks its workers)."""
    process = psutil.Process(pid)
    return [process, *process.children(recursive=True)]


def cpu_seconds(pid: int) -> float:
    """CPU seconds (user + system) process ``pid`` and its descendants have used so far."""
    total = 0.0
    for process in family(pid):
        try:
            times = process.cpu_times()
        except psutil.NoSuchProcess:  # a worker that ended meanwhile
            continue
        total += times.user + times.system
    return total


def rss_bytes(pid: int) -> int:
    """Resident memory of process ``pid`` (alone: the figure that must stay flat)."""
    return int(psutil.Process(pid).memory_info().rss)


def cpu_by_role(
    roles: Mapping[int, str], shared: Mapping[str, Callable[[str], bool]]
) -> dict[str, float]:
    """CPU seconds used so far by role: the processes ``roles`` names by pid (with their
    descendants), and every other process whose command line one of ``shared`` accepts
    (RabbitMQ, PostgreSQL: counted whole, so run nothing else meanwhile)."""
    return _by_role(roles, shared, _cpu_s)


def waited_by_role(
    roles: Mapping[int, str], shared: Mapping[str, Callable[[str], bool]]
) -> dict[str, float]:
    """Seconds the threads of each role (as :func:`cpu_by_role` finds them) have spent
    so far ready to run but waiting for a CPU (``/proc/<pid>/task/*/schedstat``)."""
    return _by_role(roles, shared, _waited_s)


def _by_role(
    roles: Mapping[int, str],
    shared: Mapping[str, Callable[[str], bool]],
    measure: Callable[[psutil.Process], float],
) -> dict[str, float]:
    used: dict[str, float] = {}
    owned: dict[int, str] = {}
    for pid, role in roles.items():
        try:
            owned.update((process.pid, role) for process in family(pid))
        except psutil.NoSuchProcess:
            continue
    for process in psutil.process_iter(["pid", "cmdline"]):
        info = process.info
        role = owned.get(info["pid"])
        if role is None:
            command = " ".join(info["cmdline"] or ())
            role = next((name for name, test in shared.items() if test(command)), None)
        if role is not None:
            try:
                used[role] = used.get(role, 0.0) + measure(process)
            except psutil.NoSuchProcess:
                continue
    return used


def _cpu_s(process: psutil.Process) -> float:
    times = process.cpu_times()
    return float(times.user + times.system)


def _waited_s(process: psutil.Process) -> float:
    # The second field of a thread's schedstat: nanoseconds spent on a run queue.
    waited = 0
    try:
        tasks = os.listdir(f"/proc/{process.pid}/task")
    except FileNotFoundError:
        raise psutil.NoSuchProcess(process.pid) from None
    for task in tasks:
        try:
            with open(f"/proc/{process.pid}/task/{task}/schedstat") as stat:
                waited += int(stat.read().split()[1])
        except (FileNotFoundError, ProcessLookupError):
            continue  # a thread that ended meanwhile
    return waited / 1e9


# --- targets, JSON and --check ----------------------------------------------------------


@dataclass(frozen=True)
class Target:
    """A figure (a dotted key into the JSON) and the bound the issue sets it."""

    key: str
    limit: float
    text: str
    #: True: the figure must stay strictly below ``limit``; False: at most ``limit``.
    strict: bool = False

    def met(self, value: float) -> bool:
        return value < self.limit if self.strict else value <= self.limit


#: Issue 12's targets, one run on this machine. A benchmark is checked against those
#: whose key its figures have.
TARGETS = (
    Target(
        "cpu_ratio_to_raw_signed.pull", 3.5, "gateway CPU per pull round trip <= 3.5x raw signed"
    ),
    Target(
        "cpu_ratio_to_raw_signed.push", 2.5, "gateway CPU per push round trip <= 2.5x raw signed"
    ),
    Target("transactions_per_round_trip.pull", 8, "<= 8 database transactions per pull round trip"),
    Target(
        "gateway_cpu_ms_per_service_request",
        25,
        "fan-out: <= 25 ms gateway CPU per service request",
    ),
    Target(
        "sql_statements_per_service_request",
        20,
        "fan-out: <= 20 SQL statements per service request",
    ),
    Target("fanout_ratio", 1.5, "fan-out p50 <= 1.5x the slowest single part's p50"),
    Target("rss_growth", 0.10, "gateway RSS growth < 10 %", strict=True),
)


def lookup(figures: Mapping[str, Any], key: str) -> float | None:
    """The figure at dotted ``key``, or None where the figures do not have it."""
    value: Any = figures
    for part in key.split("."):
        if not isinstance(value, Mapping) or part not in value:
            return None
        value = value[part]
    return None if value is None else float(value)


def verdicts(figures: Mapping[str, Any]) -> list[tuple[Target, float, bool]]:
    """Each target the figures reach: its value and whether it is met."""
    found = [(target, lookup(figures, target.key)) for target in TARGETS]
    return [(target, value, target.met(value)) for target, value in found if value is not None]


def print_by_text(by_text: dict[str, int], n: int, top: int, unit: str) -> None:
    """The ``top`` statements (by SQL text) sent most often, per ``unit`` (``n`` of them)."""
    print(f"SQL statements per {unit} by text (top {top} of {len(by_text)}):")
    for sql, count in sorted(by_text.items(), key=lambda item: -item[1])[:top]:
        print(f"  {count / n:6.2f}  {sql[:150]}")


def text_delta(before: dict[str, int], after: dict[str, int]) -> dict[str, int]:
    """The statements counted by text between two readings of a counter."""
    return {sql: n - before.get(sql, 0) for sql, n in after.items() if n > before.get(sql, 0)}


def add_output_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--json", type=Path, metavar="PATH", help="write the figures as JSON")
    parser.add_argument(
        "--check", action="store_true", help="exit 1 if a target of issue 12 is missed"
    )


def finish(args: argparse.Namespace, figures: dict[str, Any]) -> None:
    """Print the targets' verdicts, write ``--json``, and with ``--check`` exit 1 on a miss."""
    results = verdicts(figures)
    if results:
        print("targets:")
    for target, value, met in results:
        print(f"  {'OK    ' if met else 'MISSED'} {target.key} = {value:.3g}  ({target.text})")
    figures["targets"] = {
        target.key: {"limit": target.limit, "value": value, "met": met}
        for target, value, met in results
    }
    if args.json is not None:
        args.json.write_text(json.dumps(figures, indent=2, sort_keys=True) + "\n")
        print(f"figures written to {args.json}")
    if args.check and not all(met for _, _, met in results):
        sys.exit(1)
