"""Service requests through the whole bus as separate processes, as docker-compose runs it.

``smevbus serve`` (RabbitMQ vhost + PostgreSQL journal, the aggregator inside), the
three mock agencies and their adapters (ZAGS polling /ws, MVD and FNS consuming their
queues by push), each its own process (``gateway.testing.chain.running_chain``). By default
every adapter consumes by push (``--pull``: ZAGS polls /ws, as docker-compose runs it;
an idle poller backs off 0.5 s doubling to 10 s, which then dominates). The
benchmark is the portal: it POSTs ``/api/v1/service-requests`` with a ``callback_url``
pointing at its own small HTTP listener, and a request's latency is POST -> its result
callback received (no polling).

Rows, each as p50/p99 latency and requests/s:

1. each part of ``child-birth-benefit`` as a service of its own (one bus request:
   ZAGS birth record, MVD residence registration, FNS INN), generated into a catalogue
   next to the real ``child-birth-benefit``;
2. ``child-birth-benefit`` (three parts fanned out), C = 1; rows 1 and 2 interleaved;
3. ``child-birth-benefit`` with ``--concurrency`` C submissions in flight.

Then the ratio fan-out p50 / slowest single-part p50 (target <= 1.5x), the service
requests/s (target >= 100/s), and where the CPU goes: milliseconds of CPU per
service request of each process (gateway, adapters, mocks, RabbitMQ, PostgreSQL,
this benchmark) over row 3, read from /proc, so the figures say which part of the
bus to scale out (RabbitMQ and PostgreSQL are counted whole: run nothing else
meanwhile). ``--agency-latency-ms`` makes every mock agency wait
before it answers, as real registries do.

Run: .venv/bin/python benchmarks/chain.py [--requests 40] [--concurrency 8]
     [--agency-latency-ms 0]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import sys
import tempfile
import time
import tomllib
from collections import Counter
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import httpx

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from benchmarks.dbstats import settled  # noqa: E402
from benchmarks.fanout import SERVICE, Result, report  # noqa: E402
from benchmarks.router import cpu_seconds  # noqa: E402
from gateway.demo.run import APPLICANT  # noqa: E402
from gateway.testing.chain import Chain, running_chain  # noqa: E402

AMQP = "amqp://guest:guest@127.0.0.1:5672/"
TOKEN = "bench-portal-token"


# --- the catalogue: child-birth-benefit and each of its parts alone ---------------------


def _toml_value(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, str):
        return json.dumps(value, ensure_ascii=False)
    if isinstance(value, dict):
        return "{ " + ", ".join(f"{k} = {_toml_value(v)}" for k, v in value.items()) + " }"
    raise TypeError(f"no TOML for {value!r}")


def _table(name: str, values: dict[str, Any]) -> list[str]:
    """``[name]`` with its plain keys, then its sub-tables (nested dicts of dicts)."""
    lines = [f"[{name}]"]
    nested = {k: v for k, v in values.items() if isinstance(v, dict) and "const" not in v}
    for key, value in values.items():
        if key not in nested:
            lines.append(f"{json.dumps(key, ensure_ascii=False)} = {_toml_value(value)}")
    for key, value in nested.items():
        lines += _table(f"{name}.{key}", value)
    return lines


def _service(
    code: str, title: str, deadline: str, parts: list[dict[str, Any]], example: Any
) -> str:
    lines = [
        "[[service]]",
        *(
            f"{k} = {_toml_value(v)}"
            for k, v in {"code": code, "title": title, "deadline": deadline}.items()
        ),
    ]
    for part in parts:
        lines.append("[[service.part]]")
        for key in ("id", "title", "message_type", "required", "deadline"):
            lines.append(f"{key} = {_toml_value(part[key])}")
        lines += _table("service.part.request", part["request"])
        lines += _table("service.part.result", part["result"])
    lines += _table("service.example", example)
    return "\n".join(lines) + "\n"


def catalogue(path: Path) -> list[str]:
    """Write the catalogue to ``path``; the single-part service codes, in part order."""
    source = tomllib.loads((ROOT / "config" / "services.toml").read_text(encoding="utf-8"))
    service = next(s for s in source["service"] if s["code"] == SERVICE)
    texts = [
        _service(
            SERVICE, service["title"], service["deadline"], service["part"], service["example"]
        )
    ]
    singles = []
    for part in service["part"]:
        code = f"single-{part['id']}"
        singles.append(code)
        alone = {**part, "required": True}
        texts.append(
            _service(code, part["title"], service["deadline"], [alone], service["example"])
        )
    path.write_text("\n".join(texts), encoding="utf-8")
    return singles


# --- the portal: submit, and hear the result at its callback --------------------------


class Portal:
    """POSTs service requests and resolves each when its result callback arrives."""

    def __init__(self, gateway_url: str) -> None:
        self.http = httpx.AsyncClient(
            base_url=gateway_url,
            timeout=60,
            headers={"Authorization": f"Bearer {TOKEN}"},
            limits=httpx.Limits(max_connections=64),
        )
        self.waiting: dict[str, asyncio.Future[dict[str, Any]]] = {}
        self.early: dict[str, dict[str, Any]] = {}
        self.callback_url = ""
        self._server: asyncio.Server | None = None
        self._handlers: set[asyncio.Task[None]] = set()

    async def listen(self) -> None:
        self._server = await asyncio.start_server(self._serve, "127.0.0.1", 0)
        port = self._server.sockets[0].getsockname()[1]
        self.callback_url = f"http://127.0.0.1:{port}/results"

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        assert task is not None
        self._handlers.add(task)
        try:
            while True:  # keep-alive: one connection may carry many callbacks
                head = await reader.readuntil(b"\r\n\r\n")
                length = next(
                    int(line.split(b":", 1)[1])
                    for line in head.split(b"\r\n")
                    if line.lower().startswith(b"content-length:")
                )
                view = json.loads(await reader.readexactly(length))
                writer.write(b"HTTP/1.1 204 No Content\r\n\r\n")
                await writer.drain()
                future = self.waiting.pop(view["id"], None)
                if future is None:
                    self.early[view["id"]] = view
                elif not future.done():
                    future.set_result(view)
        except (asyncio.IncompleteReadError, ConnectionError):
            pass
        except asyncio.CancelledError:
            # Shut down by close(); ending normally spares Python 3.11's stream callback
            # from logging the cancellation as an error.
            pass
        finally:
            self._handlers.discard(task)
            writer.close()

    async def request(self, service: str) -> dict[str, Any]:
        """Submit ``service`` for the demo applicant; its final view (from the callback)."""
        reply = await self.http.post(
            "/api/v1/service-requests",
            json={"service": service, "applicant": APPLICANT, "callback_url": self.callback_url},
        )
        reply.raise_for_status()
        id = reply.json()["id"]
        if id in self.early:
            return self.early.pop(id)
        future: asyncio.Future[dict[str, Any]] = asyncio.get_running_loop().create_future()
        self.waiting[id] = future
        view = await asyncio.wait_for(future, timeout=120)
        if view["status"] != "COMPLETED":
            raise RuntimeError(f"{service} {id} ended {view['status']} ({view['completed_by']})")
        return view

    async def close(self) -> None:
        await self.http.aclose()
        if self._server is not None:
            self._server.close()
            for handler in self._handlers:
                handler.cancel()
            await asyncio.gather(*self._handlers, return_exceptions=True)


# --- rows and report -----------------------------------------------------------------


async def timed(row: Result, call: Callable[[], Awaitable[object]]) -> None:
    began = time.perf_counter()
    await call()
    took = time.perf_counter() - began
    row.latencies_ms.append(took * 1000)
    row.seconds += took


# --- CPU per service request, by process ------------------------------------------------


def _roles(chain: Chain) -> dict[int, str]:
    """Our processes by pid: the gateway (and its workers), adapters, mocks, this one."""
    roles = {os.getpid(): "this benchmark (the portal)"}
    for name, service in [("gateway", chain.gateway), *chain.services.items()]:
        if service.process is not None:
            roles[service.process.pid] = name
            children = Path(f"/proc/{service.process.pid}/task/{service.process.pid}/children")
            for child in children.read_text().split() if children.exists() else ():
                roles[int(child)] = name  # serve --workers N
    return roles


def cpu_by_role(chain: Chain) -> Counter[str]:
    """Seconds of CPU (user + system) used so far by role: our processes by pid, and
    every RabbitMQ and PostgreSQL process (shared: run nothing else meanwhile)."""
    roles = _roles(chain)
    used: Counter[str] = Counter()
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            command = (entry / "cmdline").read_bytes()
            role = roles.get(int(entry.name))
            if role is None and b"beam.smp" in command:
                role = "RabbitMQ"
            elif role is None and command.startswith(b"postgres"):
                role = "PostgreSQL"
            if role is not None:
                used[role] += cpu_seconds(int(entry.name))
        except OSError:  # gone meanwhile
            continue
    return used


def report_cpu(before: Counter[str], after: Counter[str], requests: int) -> None:
    spent = {role: after[role] - before.get(role, 0.0) for role in after}
    print(f"CPU per service request over the last row ({requests} requests), ms:")
    for role, seconds in sorted(spent.items(), key=lambda item: -item[1]):
        if seconds > 0:
            print(f"  {role:<32}{seconds / requests * 1000:8.1f}")
    print(f"  {'all of the above':<32}{sum(spent.values()) / requests * 1000:8.1f}")


async def measure(
    chain: Chain, singles: list[str], n: int, concurrency: int
) -> tuple[list[Result], Counter[str], Counter[str]]:
    portal = Portal(chain.gateway.base_url)
    await portal.listen()
    try:
        for code in [*singles, SERVICE]:  # warm-up: every path once
            await portal.request(code)
        rows = [Result(f"single: {code.removeprefix('single-')}", 1, [], 0.0) for code in singles]
        fanout = Result(f"{SERVICE} (3 parts)", 1, [], 0.0)
        for _ in range(n):  # interleaved, so load from elsewhere hits all rows alike
            for row, code in zip(rows, singles, strict=True):
                await timed(row, lambda code=code: portal.request(code))
            await timed(fanout, lambda: portal.request(SERVICE))
        rows.append(fanout)
        if concurrency > 1:
            loaded = Result(f"{SERVICE} (3 parts)", concurrency, [], 0.0)
            left = n

            async def worker() -> None:
                nonlocal left
                while left > 0:
                    left -= 1
                    began = time.perf_counter()
                    await portal.request(SERVICE)
                    loaded.latencies_ms.append((time.perf_counter() - began) * 1000)

            xacts = await settled(chain.database_url)
            before = cpu_by_role(chain)
            start = time.perf_counter()
            await asyncio.gather(*(worker() for _ in range(concurrency)))
            loaded.seconds = time.perf_counter() - start
            after = cpu_by_role(chain)
            rows.append(loaded)
            xacts = await settled(chain.database_url) - xacts
            print(
                "database transactions per service request over the last row "
                f"(pg_stat_database): {xacts / n:.1f}"
            )
        else:
            before = after = Counter()
        return rows, before, after
    finally:
        await portal.close()


def slow_down(chain: Chain, latency_ms: int) -> None:
    for name, service in chain.services.items():
        if name.startswith("mock-") and service.ready_url is not None:
            control = httpx.URL(service.ready_url).copy_with(path="/_control", query=None)
            httpx.post(control, json={"latency_ms": latency_ms}, timeout=10).raise_for_status()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--requests", type=int, default=40, help="per row")
    parser.add_argument("--concurrency", type=int, default=8)
    parser.add_argument("--agency-latency-ms", type=int, default=0)
    parser.add_argument(
        "--workers", type=int, default=1, help="requests each adapter answers at once"
    )
    parser.add_argument(
        "--gateway-workers", type=int, default=1, help="smevbus serve --workers (processes)"
    )
    parser.add_argument(
        "--pull",
        action="store_true",
        help="the ZAGS adapter polls /ws (as docker-compose runs it) instead of push",
    )
    args = parser.parse_args()
    work = Path(tempfile.mkdtemp(prefix="smevbus-bench-chain-"))
    services = work / "services.toml"
    singles = catalogue(services)
    logs = work / "logs"
    logs.mkdir()
    print(
        f"{args.requests} requests per row; smevbus serve + 3 mock agencies + 3 adapters as "
        f"processes (logs in {logs}); adapters {'ZAGS polling, ' if args.pull else ''}"
        f"consuming by push, {args.workers} worker(s) each; {args.gateway_workers} gateway "
        f"process(es); agency latency "
        f"{args.agency_latency_ms} ms;\nlatency = POST -> "
        "result callback received"
    )
    with running_chain(
        AMQP,
        work / "keys",
        logs,
        api_tokens={TOKEN: "PORTAL"},
        gateway_env={
            "SMEVBUS_SERVICES_FILE": str(services),
            "SMEVBUS_LOG_LEVEL": "WARNING",
            "SMEVBUS_HTTP_WORKERS": str(args.gateway_workers),
            # The portal's callback listener is on loopback: callbacks reach it only listed.
            "SMEVBUS_CALLBACK_NETWORKS": "127.0.0.0/8",
        },
        pulling=("zags",) if args.pull else (),
        adapter_args=("--workers", str(args.workers)),
    ) as chain:
        slow_down(chain, args.agency_latency_ms)
        rows, before, after = asyncio.run(measure(chain, singles, args.requests, args.concurrency))
    report(rows, {}, {})
    if after:
        report_cpu(before, after, args.requests)


if __name__ == "__main__":
    main()
