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
this benchmark) over row 3 (psutil), so the figures say which part of the bus to
scale out (RabbitMQ and PostgreSQL are counted whole: run nothing else meanwhile),
and the SQL statements (counted on the wire, ``benchmarks/sqlcount.py``) and database
transactions (``pg_stat_database``) per service request. ``--agency-latency-ms``
makes every mock agency wait before it answers, as real registries do. RabbitMQ and
PostgreSQL are ``SMEVBUS_AMQP_URL`` and ``SMEVBUS_DATABASE_URL``. Figures, JSON keys
and targets: ``benchmarks/README.md``.

``--statements-by-text N`` also prints the N statements (by SQL text) sent most often
per service request over row 3.

Run: .venv/bin/python benchmarks/chain.py [--requests 40] [--concurrency 8]
     [--agency-latency-ms 0] [--statements-by-text N] [--json PATH] [--check]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import statistics
import sys
import tempfile
import time
import tomllib
from pathlib import Path
from typing import Any

import asyncpg
import httpx

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from benchmarks.dbstats import settled  # noqa: E402
from benchmarks.fanout import SERVICE, fanout_ratio, report  # noqa: E402
from benchmarks.harness import (  # noqa: E402
    Result,
    add_output_options,
    amqp_url,
    cpu_by_role,
    database_url,
    drive,
    finish,
    interleaved,
    print_by_text,
    text_delta,
    waited_by_role,
)
from benchmarks.sqlcount import StatementCounter  # noqa: E402
from gateway.demo.run import APPLICANT  # noqa: E402
from gateway.testing.chain import Chain, running_chain  # noqa: E402

TOKEN = "bench-portal-token"
#: Spans (and their seconds) over which the chain's idle CPU is measured before the C=1 rows.
IDLE_SPANS, IDLE_SPAN = 4, 1.0


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
        #: When each service request was POSTed and its result callback arrived (wall clock, s).
        self.posted: dict[str, float] = {}
        self.service: dict[str, str] = {}
        self.heard: dict[str, float] = {}
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
                self.heard[view["id"]] = time.time()
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
        posted = time.time()
        reply = await self.http.post(
            "/api/v1/service-requests",
            json={"service": service, "applicant": APPLICANT, "callback_url": self.callback_url},
        )
        reply.raise_for_status()
        id = reply.json()["id"]
        self.posted[id], self.service[id] = posted, service
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


# --- where a fan-out's time goes, from the journal's own timestamps --------------------

_PARTS = """
SELECT srm.service_request_id AS sr, srm.part_id AS part, 'request' AS side, t.to_state AS state,
       extract(epoch FROM t.at) AS at
  FROM service_request_messages srm JOIN transitions t ON t.message_id = srm.message_id
 WHERE srm.service_request_id = ANY($1::text[])
UNION ALL
SELECT srm.service_request_id, srm.part_id, 'response', t.to_state, extract(epoch FROM t.at)
  FROM service_request_messages srm
  JOIN messages m ON m.in_reply_to = srm.message_id
  JOIN transitions t ON t.message_id = m.message_id
 WHERE srm.service_request_id = ANY($1::text[])
"""
_SAVED = "SELECT id, extract(epoch FROM updated_at) AS at FROM service_requests WHERE id = ANY($1)"

#: The milestones of one part, in the order they happen. Not the publishes: a message
#: is journaled QUEUED by whoever takes it (gateway/router/marks.py), with that move.
MILESTONES = [
    ("request", "ACCEPTED", "request journaled"),
    ("response", "ACCEPTED", "adapter's SendResponse journaled"),
    ("response", "ACKED", "reply taken by the aggregator"),
]


def _rank(rank: int, parts: int) -> str:
    """The column of the part that reaches a milestone ``rank``-th of ``parts``."""
    if parts == 1:
        return ""
    if rank == parts - 1:
        return "last part"
    return f"{_ORDINALS[rank]} part" if rank < len(_ORDINALS) else f"part {rank + 1}"


_ORDINALS = ("first", "second", "third", "fourth", "fifth")


async def timeline(database_url: str, portal: Portal) -> dict[str, dict[str, float]]:
    """For each service ``portal`` heard back from: the median ms from POST to each
    milestone of a part (of a fan-out: of the part that reaches it first, second, ...,
    last: replies taking turns show here), to the final save and to the callback."""
    heard = [id for id in portal.service if id in portal.heard]
    connection = await asyncpg.connect(database_url)
    try:
        rows = await connection.fetch(_PARTS, heard)
        saved = {row["id"]: float(row["at"]) for row in await connection.fetch(_SAVED, heard)}
    finally:
        await connection.close()
    # (service request, part, side, state) -> first time
    first: dict[tuple[str, str, str, str], float] = {}
    parts: dict[str, set[str]] = {}
    for row in rows:
        key = (row["sr"], row["part"], row["side"], row["state"])
        first[key] = min(first.get(key, float("inf")), float(row["at"]))
        parts.setdefault(row["sr"], set()).add(row["part"])
    found: dict[str, dict[str, float]] = {}
    for service in sorted(set(portal.service.values())):
        ids = [id for id in heard if portal.service[id] == service and id in parts]
        width = max(len(parts[id]) for id in ids) if ids else 1
        for rank in range(width):
            name = f"{service} {_rank(rank, width)}".strip()
            medians: dict[str, float] = {}
            for side, state, what in MILESTONES:
                offsets = []
                for id in ids:
                    times = [first.get((id, part, side, state)) for part in parts[id]]
                    if None not in times and len(times) == width:
                        at = sorted(t for t in times if t is not None)[rank]
                        offsets.append((at - portal.posted[id]) * 1000)
                if offsets:
                    medians[what] = statistics.median(offsets)
            for what, ends in (("saved complete", saved), ("callback heard", portal.heard)):
                medians[what] = statistics.median(
                    (ends[id] - portal.posted[id]) * 1000 for id in ids
                )
            found[name] = medians
    print("where the time goes (C=1 rows; median ms from POST):")
    names = list(found)
    for what in [m[2] for m in MILESTONES] + ["saved complete", "callback heard"]:
        print(
            f"  {what:<40}"
            + "".join(f"{found[name].get(what, float('nan')):>10.1f}" for name in names)
        )
    for i, name in enumerate(names):
        print(f"  column {i + 1}: {name}")
    return found


# --- CPU per service request, by process ------------------------------------------------

PORTAL_ROLE = "this benchmark (the portal)"
#: What the bus itself is made of (the rest: agencies, adapters, this portal).
BUS_ROLES = ("gateway", "RabbitMQ", "PostgreSQL")
SHARED = {
    "RabbitMQ": lambda command: "beam.smp" in command,
    "PostgreSQL": lambda command: command.startswith("postgres"),
}


#: Appended to a role in the C=1 rows' meter: its seconds waiting for a CPU.
WAITING = " waiting"


def _roles(chain: Chain) -> dict[int, str]:
    roles = {os.getpid(): PORTAL_ROLE}
    for name, service in [("gateway", chain.gateway), *chain.services.items()]:
        if service.process is not None:
            roles[service.process.pid] = name
    return roles


def chain_cpu(chain: Chain) -> dict[str, float]:
    """CPU seconds used so far by role: the gateway (and its workers), each adapter and
    mock, this benchmark, and all of RabbitMQ and PostgreSQL (run nothing else meanwhile)."""
    return cpu_by_role(_roles(chain), SHARED)


def chain_meter(chain: Chain) -> dict[str, float]:
    """The C=1 rows' meter: every process's CPU seconds but this benchmark's (measured
    apart), and every role's seconds spent ready to run but waiting for a CPU."""
    waited = waited_by_role(_roles(chain), SHARED)
    return others_cpu(chain) | {role + WAITING: s for role, s in waited.items()}


def others_cpu(chain: Chain) -> dict[str, float]:
    """CPU seconds used so far by every process of the chain but this benchmark, by role."""
    return {role: s for role, s in chain_cpu(chain).items() if role != PORTAL_ROLE}


class Measured:
    """The rows, and over the concurrent row: CPU by role, transactions, statements."""

    def __init__(self) -> None:
        self.rows: list[Result] = []
        #: CPU seconds per second the chain's processes use with nothing in flight, by role.
        self.idle_cpu_rate: dict[str, float] = {}
        self.cpu_s: dict[str, float] = {}
        self.transactions = 0
        self.statements = 0
        self.by_text: dict[str, int] = {}
        self.timeline: dict[str, dict[str, float]] = {}


async def measure(
    chain: Chain,
    counter: StatementCounter,
    singles: list[str],
    n: int,
    concurrency: int,
    with_timeline: bool = False,
) -> Measured:
    portal = Portal(chain.gateway.base_url)
    await portal.listen()
    measured = Measured()
    try:
        for code in [*singles, SERVICE]:  # warm-up: every path once
            await portal.request(code)
        # What the chain burns with nothing in flight (pollers, timers), to take out of
        # the C=1 rows' CPU: each role's least over a few spans (other load only adds).
        for _ in range(IDLE_SPANS):
            idle, began = others_cpu(chain), time.perf_counter()
            await asyncio.sleep(IDLE_SPAN)
            span = time.perf_counter() - began
            for role, s in others_cpu(chain).items():
                rate = (s - idle.get(role, 0.0)) / span
                measured.idle_cpu_rate[role] = min(rate, measured.idle_cpu_rate.get(role, rate))
        codes = [*singles, SERVICE]
        names = [f"single: {code.removeprefix('single-')}" for code in singles]
        measured.rows = await interleaved(
            [*names, f"{SERVICE} (3 parts)"],
            n,
            [lambda code=code: portal.request(code) for code in codes],
            warmup=0,
            meter=lambda: chain_meter(chain),
        )
        if with_timeline:
            measured.timeline = await timeline(chain.database_url, portal)
        if concurrency > 1:
            xacts, statements = await settled(chain.database_url), counter.statements
            texts = counter.by_text() if counter.counts_text else {}
            before = chain_cpu(chain)
            loaded = await drive(
                f"{SERVICE} (3 parts)", n, concurrency, lambda: portal.request(SERVICE)
            )
            after = chain_cpu(chain)
            measured.statements = counter.statements - statements
            if counter.counts_text:
                measured.by_text = text_delta(texts, counter.by_text())
            measured.transactions = await settled(chain.database_url) - xacts
            measured.cpu_s = {role: after[role] - before.get(role, 0.0) for role in after}
            measured.rows.append(loaded)
        return measured
    finally:
        await portal.close()


def cpu_bound(measured: Measured, cores: int) -> dict[str, Any]:
    """What each C=1 request cost in CPU, every process counted, and the fan-out ratio
    no schedule can beat on ``cores`` cores with that much CPU per fan-out."""
    rows = [row for row in measured.rows if row.concurrency == 1]
    by_role = {
        row.label: {PORTAL_ROLE: row.cpu_ms}
        | {
            role: row.per_call_ms(s - measured.idle_cpu_rate.get(role, 0.0) * row.seconds)
            for role, s in row.others_cpu_s.items()
            if not role.endswith(WAITING)
        }
        for row in rows
    }
    # A thread or process that ended during a row took its wait with it (PostgreSQL's
    # autovacuum workers): such a role's wait may come out low, never below nothing.
    waited = {
        row.label: {
            role.removesuffix(WAITING): max(0.0, row.per_call_ms(s))
            for role, s in row.others_cpu_s.items()
            if role.endswith(WAITING)
        }
        for row in rows
    }
    per_request = {label: sum(roles.values()) for label, roles in by_role.items()}
    ratio, fanout, slowest = fanout_ratio(measured.rows)
    floor_ms = per_request[fanout.label] / cores
    bound = floor_ms / slowest.pct(50)
    idle_ms = sum(measured.idle_cpu_rate.values()) * 1000
    print(
        "C=1, CPU per request of each process (the chain's idle background, "
        f"{idle_ms:.1f} ms/s, taken out), ms:"
    )
    roles = sorted(by_role[fanout.label], key=lambda role: -by_role[fanout.label][role])
    print(f"  {'':<32}" + "".join(f"{f'row {i + 1}':>10}" for i in range(len(rows))))
    for role in [*roles, "all"]:
        cells = [per_request[r.label] if role == "all" else by_role[r.label][role] for r in rows]
        print(f"  {role:<32}" + "".join(f"{ms:>10.1f}" for ms in cells))
    print(
        f"on {cores} cores no schedule finishes a fan-out in less than "
        f"{per_request[fanout.label]:.1f} / {cores} = {floor_ms:.1f} ms: fan-out ratio "
        f">= {bound:.2f}x with this CPU (measured {ratio:.2f}x)"
    )
    print("C=1, time per request each process was ready to run but waited for a CPU, ms:")
    for role in [*roles, "all"]:
        cells = [
            sum(waited[r.label].values()) if role == "all" else waited[r.label].get(role, 0.0)
            for r in rows
        ]
        print(f"  {role:<32}" + "".join(f"{ms:>10.1f}" for ms in cells))
    return {
        "c1_cpu_ms_per_request": per_request,
        "c1_cpu_ms_per_request_by_role": by_role,
        "c1_cpu_wait_ms_per_request_by_role": waited,
        "fanout_ratio_cpu_bound": bound,
        "cores": cores,
    }


def cpu_figures(measured: Measured, requests: int) -> dict[str, Any]:
    """Print and return what one service request of the concurrent row cost."""
    per_request = {role: s * 1000 / requests for role, s in measured.cpu_s.items() if s > 0}
    print(f"CPU per service request over the last row ({requests} requests), ms:")
    for role, ms in sorted(per_request.items(), key=lambda item: -item[1]):
        print(f"  {role:<32}{ms:8.1f}")
    print(f"  {'all of the above':<32}{sum(per_request.values()):8.1f}")
    figures = {
        "cpu_ms_per_service_request": per_request,
        "gateway_cpu_ms_per_service_request": per_request.get("gateway", 0.0),
        "bus_cpu_ms_per_service_request": sum(per_request.get(r, 0.0) for r in BUS_ROLES),
        "sql_statements_per_service_request": measured.statements / requests,
        "transactions_per_service_request": measured.transactions / requests,
    }
    print(
        "per service request over the last row: SQL statements (on the wire) "
        f"{figures['sql_statements_per_service_request']:.1f}, database transactions "
        f"(pg_stat_database) {figures['transactions_per_service_request']:.1f}"
    )
    return figures


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
    parser.add_argument(
        "--statements-by-text",
        type=int,
        default=0,
        metavar="N",
        help="print the N SQL texts sent most often per service request (last row)",
    )
    parser.add_argument(
        "--timeline",
        action="store_true",
        help="print where the C=1 fan-outs' time goes, from the journal's timestamps",
    )
    add_output_options(parser)
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
    database = database_url()
    with (
        StatementCounter(database, by_text=args.statements_by_text > 0) as counter,
        running_chain(
            amqp_url(),
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
            database_admin_url=database,
            route_database=counter.route,
        ) as chain,
    ):
        slow_down(chain, args.agency_latency_ms)
        measured = asyncio.run(
            measure(chain, counter, singles, args.requests, args.concurrency, args.timeline)
        )
    figures = {"benchmark": "chain", **report(measured.rows, {}, {})}
    figures |= cpu_bound(measured, len(os.sched_getaffinity(0)))
    if measured.cpu_s:
        figures |= cpu_figures(measured, args.requests)
    if measured.timeline:
        figures["fanout_timeline_ms"] = measured.timeline
    if measured.by_text:
        print_by_text(measured.by_text, args.requests, args.statements_by_text, "service request")
    finish(args, figures)


if __name__ == "__main__":
    main()
