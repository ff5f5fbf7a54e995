"""Gateway CPU per round trip of two trees, interleaved: which one costs less.

On a shared host the CPU of one ``router.py`` run drifts by tens of per cent from one
run to the next, the raw signed denominator with it. Here two ``smevbus serve``
processes run at once, the base tree's and this one's (each on its own fresh vhost and
database), and ``router.py``'s pull and push round trips go to them in alternating
batches: whatever the host does meanwhile hits both alike, and their ratio holds.

The base tree is another checkout with its own ``make setup`` (``git worktree add
/tmp/base REV && make -C /tmp/base setup``); ``--base`` names its ``smevbus``.

Run: .venv/bin/python benchmarks/trees.py --base /tmp/base/.venv/bin/smevbus
[--rounds 8] [--batch 150] [--json PATH]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
import tempfile
from contextlib import ExitStack
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from benchmarks.harness import amqp_url, cpu_seconds, database_url  # noqa: E402
from benchmarks.router import smevbus_pipeline  # noqa: E402
from gateway.core.clock import SystemClock  # noqa: E402
from gateway.crypto.devpki import init_dev_pki  # noqa: E402
from gateway.testing import processes  # noqa: E402
from gateway.testing.processes import GatewayProcess, fresh_database, isolated_vhost  # noqa: E402

CONCURRENCY = 16
WARMUP = 200


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--base", type=Path, required=True, help="the base tree's smevbus")
    parser.add_argument("--rounds", type=int, default=8, help="batches per tree and mode")
    parser.add_argument("--batch", type=int, default=150, help="round trips per batch")
    parser.add_argument("--json", type=Path, help="write the figures here")
    args = parser.parse_args()
    trees = {"base": args.base, "this": processes.SMEVBUS}
    keys = Path(tempfile.mkdtemp(prefix="smevbus-bench-keys-"))
    init_dev_pki(
        keys,
        {m: m for m in ("PORTAL", "ZAGS", "MVD_MIGR", "FNS", "SMEVBUS")},
        clock=SystemClock(),
    )
    figures: dict[str, dict[str, float]] = {}
    with ExitStack() as stack:
        gateways: dict[str, tuple[GatewayProcess, str]] = {}
        for name, binary in trees.items():
            vhost = stack.enter_context(isolated_vhost(amqp_url()))
            database = stack.enter_context(fresh_database(database_url()))
            gateway = GatewayProcess(
                env={
                    "SMEVBUS_TRANSPORT": "amqp",
                    "SMEVBUS_AMQP_URL": vhost,
                    "SMEVBUS_DATABASE_URL": database,
                    "SMEVBUS_KEYS_DIR": str(keys),
                    "SMEVBUS_LOG_LEVEL": "WARNING",
                },
                log_path=Path(tempfile.mkdtemp()) / f"gateway-{name}.log",
                binary=binary,
            )
            gateway.start()
            stack.callback(gateway.stop)
            gateways[name] = (gateway, vhost)
        for mode in ("pull", "push"):
            cpu = dict.fromkeys(gateways, 0.0)
            for step in range(-1, args.rounds):  # -1: a warm-up batch each, not counted
                order = list(gateways) if step % 2 == 0 else list(gateways)[::-1]
                for name in order:
                    gateway, vhost = gateways[name]
                    assert gateway.process is not None
                    before = cpu_seconds(gateway.process.pid)
                    asyncio.run(
                        smevbus_pipeline(
                            gateway,
                            keys,
                            WARMUP if step < 0 else args.batch,
                            CONCURRENCY,
                            [],
                            push_from=vhost if mode == "push" else None,
                        )
                    )
                    if step >= 0:
                        cpu[name] += cpu_seconds(gateway.process.pid) - before
            per = {name: 1000 * cpu[name] / (args.rounds * args.batch) for name in gateways}
            figures[mode] = {**per, "this_over_base": per["this"] / per["base"]}
            print(
                f"{mode}: gateway CPU per round trip: base {per['base']:.2f} ms, "
                f"this {per['this']:.2f} ms; this / base {per['this'] / per['base']:.3f}",
                flush=True,
            )
    if args.json:
        args.json.write_text(json.dumps(figures, indent=2))


if __name__ == "__main__":
    main()
