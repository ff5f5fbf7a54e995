"""Fan-out latency of two trees, interleaved: which one answers sooner.

``chain.py``'s fan-out ratio follows the host more than the code: on a shared 2-core
host the single part's p50 moved between 14 and 30 ms from one run of the same code
to the next, and the fan-out ratio between 1.69 and 1.51 with it. Here two whole
chains run side by side, the base tree's and this one's (each ``smevbus serve`` and its
three adapters on its own vhost and database; the mock agencies are this checkout's
for both), and the service requests of ``chain.py``'s C = 1 rows (each part alone, the
three-part fan-out) go to them in turn, one of each row to each chain per step (half
the steps the base's first, half this one's): whatever the host does meanwhile hits
both alike. Printed per tree: each row's p50, the fan-out ratio (fan-out p50 over the
slowest single part's); then this tree's p50s and ratio over the base's.

With ``--bursts B`` (and ``--concurrency C``, default 8), the fan-out then goes to the
chains under load: ``B`` bursts of ``--requests`` service requests per tree with C in
flight, the trees in turn (half the rounds the base's burst first). Per tree: service
requests/s over its bursts and CPU per service request by process (RabbitMQ and
PostgreSQL are counted whole while a tree's burst runs: the other chain idles); then
this tree's over the base's. On a shared host sequential ``chain.py`` runs of one
tree moved gateway CPU per service request between 9.5 and 12.1 ms.

The base tree is another checkout with its own ``make setup`` (``git worktree add
/tmp/base REV && make -C /tmp/base setup``); ``--base`` names its ``smevbus``.

Run: .venv/bin/python benchmarks/chains.py --base /tmp/base/.venv/bin/smevbus
[--requests 60] [--bursts 0] [--concurrency 8] [--json PATH]
"""

from __future__ import annotations

import argparse
import asyncio
import functools
import json
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable
from contextlib import ExitStack
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from benchmarks.chain import TOKEN, Portal, catalogue, chain_cpu  # noqa: E402
from benchmarks.fanout import SERVICE, fanout_ratio  # noqa: E402
from benchmarks.harness import Result, amqp_url, database_url, drive, interleaved  # noqa: E402
from gateway.testing.chain import Chain, running_chain  # noqa: E402
from gateway.testing.processes import SMEVBUS  # noqa: E402

TREES = ("base", "this")


async def measure(
    chains: dict[str, Chain], singles: list[str], n: int, bursts: int, concurrency: int
) -> tuple[dict[str, list[Result]], dict[str, Loaded]]:
    """Each tree's C = 1 rows (``chain.py``'s names), measured in turn; then its bursts."""
    portals = {tree: Portal(chain.gateway.base_url) for tree, chain in chains.items()}
    for portal in portals.values():
        await portal.listen()
    try:
        rows = await _singles_and_fanout(portals, singles, n)
        loaded = {tree: Loaded() for tree in chains}
        for burst in range(bursts):
            for tree in list(chains) if burst % 2 == 0 else list(chains)[::-1]:
                await loaded[tree].burst(chains[tree], portals[tree], n, concurrency)
    finally:
        for portal in portals.values():
            await portal.close()
    return rows, loaded


class Loaded:
    """A tree's bursts: service requests, seconds, CPU seconds by process."""

    def __init__(self) -> None:
        self.requests = 0
        self.seconds = 0.0
        self.cpu_s: dict[str, float] = {}

    async def burst(self, chain: Chain, portal: Portal, n: int, concurrency: int) -> None:
        before, began = chain_cpu(chain), time.perf_counter()
        await drive(SERVICE, n, concurrency, lambda: portal.request(SERVICE))
        self.seconds += time.perf_counter() - began
        for role, s in chain_cpu(chain).items():
            self.cpu_s[role] = self.cpu_s.get(role, 0.0) + s - before.get(role, 0.0)
        self.requests += n

    def figures(self) -> dict[str, Any]:
        cpu = {role: s * 1000 / self.requests for role, s in sorted(self.cpu_s.items())}
        return {
            "service_requests_per_s": self.requests / self.seconds,
            "cpu_ms_per_service_request": cpu,
            "all_cpu_ms_per_service_request": sum(cpu.values()),
        }


async def _singles_and_fanout(
    portals: dict[str, Portal], singles: list[str], n: int
) -> dict[str, list[Result]]:
    codes = [*singles, SERVICE]
    for portal in portals.values():  # warm-up: every path once
        for code in codes:
            await portal.request(code)
    by_tree: dict[str, dict[str, Result]] = {tree: {} for tree in portals}
    # Half the steps with the base tree's call first, half with this one's.
    for order in (list(portals), list(portals)[::-1]):
        names: list[str] = []
        ones: list[Callable[[], Awaitable[object]]] = []
        for code in codes:
            part = code.removeprefix("single-")
            row = f"{SERVICE} (3 parts)" if code == SERVICE else f"single: {part}"
            for tree in order:
                names.append(f"{tree} {row}")
                ones.append(functools.partial(portals[tree].request, code))
        for result in await interleaved(names, n // 2, ones, warmup=0):
            tree, _, row = result.name.partition(" ")
            kept = by_tree[tree].setdefault(row, Result(row))
            kept.latencies_ms += result.latencies_ms
    return {tree: list(rows.values()) for tree, rows in by_tree.items()}


def figures(by_tree: dict[str, list[Result]]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for tree, rows in by_tree.items():
        ratio, _, slowest = fanout_ratio(rows)
        out[tree] = {
            "p50_ms": {r.name: r.pct(50) for r in rows},
            "fanout_ratio": ratio,
            "slowest_single": slowest.name,
        }
        print(f"{tree}:")
        for r in rows:
            print(f"  {r.name:40s} p50 {r.pct(50):7.2f} ms  p99 {r.pct(99):7.2f} ms")
        print(f"  fan-out ratio {ratio:.3f} (over {slowest.name})")
    this, base = out["this"], out["base"]
    out["this_over_base"] = {
        "p50": {row: this["p50_ms"][row] / base["p50_ms"][row] for row in base["p50_ms"]},
        "fanout_ratio": this["fanout_ratio"] / base["fanout_ratio"],
    }
    print("this / base:")
    for row, value in out["this_over_base"]["p50"].items():
        print(f"  {row:40s} p50 {value:.3f}")
    print(f"  fan-out ratio {out['this_over_base']['fanout_ratio']:.3f}")
    return out


def loaded_figures(loaded: dict[str, Loaded], concurrency: int) -> dict[str, Any]:
    out: dict[str, Any] = {tree: one.figures() for tree, one in loaded.items()}
    out["concurrency"] = concurrency
    this, base = out["this"], out["base"]
    print(f"\nthe fan-out with {concurrency} in flight, in bursts:")
    for tree in TREES:
        cpu = out[tree]["cpu_ms_per_service_request"]
        print(
            f"  {tree}: {out[tree]['service_requests_per_s']:.1f} service requests/s; "
            f"CPU ms per service request: all {out[tree]['all_cpu_ms_per_service_request']:.2f}, "
            + ", ".join(f"{role} {ms:.2f}" for role, ms in cpu.items() if ms >= 0.05)
        )
    out["this_over_base"] = {
        "service_requests_per_s": this["service_requests_per_s"] / base["service_requests_per_s"],
        "cpu_ms_per_service_request": {
            role: ms / base["cpu_ms_per_service_request"][role]
            for role, ms in this["cpu_ms_per_service_request"].items()
            if base["cpu_ms_per_service_request"].get(role, 0) >= 0.05
        },
        "all_cpu_ms_per_service_request": (
            this["all_cpu_ms_per_service_request"] / base["all_cpu_ms_per_service_request"]
        ),
    }
    ratios = out["this_over_base"]
    print(
        f"  this / base: service requests/s {ratios['service_requests_per_s']:.3f}; CPU: all "
        f"{ratios['all_cpu_ms_per_service_request']:.3f}, "
        + ", ".join(f"{role} {r:.3f}" for role, r in ratios["cpu_ms_per_service_request"].items())
    )
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--base", type=Path, required=True, help="the base tree's smevbus")
    parser.add_argument("--requests", type=int, default=60, help="per row and tree, and burst")
    parser.add_argument("--bursts", type=int, default=0, help="loaded bursts per tree")
    parser.add_argument("--concurrency", type=int, default=8, help="in flight in a burst")
    parser.add_argument("--json", type=Path, help="write the figures here")
    args = parser.parse_args()
    work = Path(tempfile.mkdtemp(prefix="smevbus-bench-chains-"))
    services = work / "services.toml"
    singles = catalogue(services)
    binaries = {"base": args.base, "this": SMEVBUS}
    print(
        f"{args.requests} requests per row and tree, one of each in turn; two chains "
        f"(logs in {work})"
    )
    with ExitStack() as stack:
        chains: dict[str, Chain] = {}
        for tree in TREES:
            logs = work / f"logs-{tree}"
            logs.mkdir()
            chains[tree] = stack.enter_context(
                running_chain(
                    amqp_url(),
                    work / f"keys-{tree}",
                    logs,
                    api_tokens={TOKEN: "PORTAL"},
                    gateway_env={
                        "SMEVBUS_SERVICES_FILE": str(services),
                        "SMEVBUS_LOG_LEVEL": "WARNING",
                        "SMEVBUS_CALLBACK_NETWORKS": "127.0.0.0/8",
                    },
                    pulling=(),  # every adapter consumes by push, as chain.py's default
                    database_admin_url=database_url(),
                    binary=binaries[tree],
                )
            )
        by_tree, loaded = asyncio.run(
            measure(chains, singles, args.requests, args.bursts, args.concurrency)
        )
    result = figures(by_tree)
    if args.bursts:
        result["loaded"] = loaded_figures(loaded, args.concurrency)
    if args.json:
        args.json.write_text(json.dumps({"benchmark": "chains", **result}, indent=2))


if __name__ == "__main__":
    main()
