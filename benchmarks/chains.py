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

The base tree is another checkout with its own ``make setup`` (``git worktree add
/tmp/base REV && make -C /tmp/base setup``); ``--base`` names its ``smevbus``.

Run: .venv/bin/python benchmarks/chains.py --base /tmp/base/.venv/bin/smevbus
[--requests 60] [--json PATH]
"""

from __future__ import annotations

import argparse
import asyncio
import functools
import json
import sys
import tempfile
from collections.abc import Awaitable, Callable
from contextlib import ExitStack
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from benchmarks.chain import TOKEN, Portal, catalogue  # noqa: E402
from benchmarks.fanout import SERVICE, fanout_ratio  # noqa: E402
from benchmarks.harness import Result, amqp_url, database_url, interleaved  # noqa: E402
from gateway.testing.chain import Chain, running_chain  # noqa: E402
from gateway.testing.processes import SMEVBUS  # noqa: E402

TREES = ("base", "this")


async def measure(chains: dict[str, Chain], singles: list[str], n: int) -> dict[str, list[Result]]:
    """Each tree's C = 1 rows (``chain.py``'s names), measured in turn."""
    portals = {tree: Portal(chain.gateway.base_url) for tree, chain in chains.items()}
    for portal in portals.values():
        await portal.listen()
    try:
        codes = [*singles, SERVICE]
        for portal in portals.values():  # warm-up: every path once
            for code in codes:
                await portal.request(code)
        by_tree: dict[str, dict[str, Result]] = {tree: {} for tree in chains}
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
    finally:
        for portal in portals.values():
            await portal.close()
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


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--base", type=Path, required=True, help="the base tree's smevbus")
    parser.add_argument("--requests", type=int, default=60, help="per row and tree")
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
        by_tree = asyncio.run(measure(chains, singles, args.requests))
    result = figures(by_tree)
    if args.json:
        args.json.write_text(json.dumps({"benchmark": "chains", **result}, indent=2))


if __name__ == "__main__":
    main()
