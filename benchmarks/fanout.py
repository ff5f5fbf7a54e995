"""Fan-out: child-birth-benefit through the aggregator next to each of its single requests.

In one process, as ``smevbus demo``: the router on the memory transport with a SQLite
journal (a file in a temp dir unless ``--database``), a fresh ECDSA (P-256) dev PKI in
a temp dir (``init_dev_pki``), the mock ZAGS / MVD / FNS agencies served by uvicorn on
threads with latency 0 (``gateway.demo.agencies``), the real adapters
(``DemoAdapters``) and the aggregator (the composition root, ``gateway.bus``). Every bus
call is a signed SOAP exchange through ``Router.handle``, verified on both sides.

Rows, each as p50/p99 latency and requests/s:

1. each single part alone (birth record -> ZAGS, residence registration -> MVD,
   INN -> FNS): portal SendRequest of that part's content (built from the catalogue
   and the demo applicant, exactly what the aggregator sends) -> its adapter's
   ``run_once`` answers it -> portal GetResponse + Ack;
2. ``child-birth-benefit`` sequentially (C = 1): ``Aggregator.submit`` (three signed
   SendRequests, state in the store) -> the three adapters' ``run_once`` together
   (``asyncio.gather``: in production they are separate processes working in
   parallel) -> the reply intake drained -> until the record is final (COMPLETED checked);
   the C = 1 rows of 1 and 2 are measured interleaved (one call of each per step) so
   load from elsewhere hits them alike;
3. ``child-birth-benefit`` with ``--concurrency`` C submissions in flight: C workers
   submit and wait; one driver task loops over the adapters (drained together) and
   the pump and resolves the records that became final. Latency is submit -> final.

Then, per part inside the fan-out, p50 of sent -> replied as recorded in the service
request state; the ratio fan-out p50 / slowest single-part p50 against the issue's
target (<= 1.5x) and the service requests/s against the target (>= 100/s).

Run: .venv/bin/python benchmarks/fanout.py [--requests 100] [--concurrency 8]
     [--budget 45] [--database sqlite:///path | sqlite://] [--agency-latency-ms 0]

``--agency-latency-ms`` makes every mock agency wait before answering, as real
registries do: then the parts wait in parallel and the fan-out's price is its own
overhead, not the sum of three parts' CPU on one core.

``--budget`` caps each phase (the interleaved C = 1 rows, then the concurrent row) in
seconds so the default run stays near 2 minutes on a loaded machine; the ``n`` column
says how many were done.
"""

from __future__ import annotations

import argparse
import asyncio
import copy
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
from lxml import etree

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from adapters.sdk import AdapterRunner  # noqa: E402
from benchmarks.harness import Result, add_output_options, finish, interleaved, table  # noqa: E402
from gateway.aggregator import Aggregator, build_request  # noqa: E402
from gateway.aggregator.replies import ReplyIntake  # noqa: E402
from gateway.bus import Bus, load_registry, open_bus  # noqa: E402
from gateway.client.participant import ParticipantClient  # noqa: E402
from gateway.config import Settings  # noqa: E402
from gateway.core.clock import SystemClock  # noqa: E402
from gateway.crypto.devpki import init_dev_pki  # noqa: E402
from gateway.crypto.keystore import load_signer  # noqa: E402
from gateway.demo.agencies import DemoAdapters, MockAgency, mock_agencies  # noqa: E402
from gateway.demo.run import APPLICANT  # noqa: E402
from gateway.logs import configure_logging  # noqa: E402
from gateway.store.service_requests import ServiceRequestRecord  # noqa: E402
from gateway.xml.readers import read_response_data  # noqa: E402

SERVICE = "child-birth-benefit"
PORTAL = "PORTAL"
MAX_ROUNDS = 20


# --- measuring -----------------------------------------------------------------------


# --- the bench in one process ------------------------------------------------------------


def _client(bus: Bus, settings: Settings, mnemonic: str) -> ParticipantClient:
    return ParticipantClient(
        signer=load_signer(settings.keys_dir, mnemonic, settings.signature_profile),
        verifier=bus.ctx.verifier,
        clock=bus.clock,
        call=bus.handle,
        bus_mnemonic=bus.registry.bus_mnemonic,
        ids=bus.ctx.ids,
    )


@dataclass
class Bench:
    aggregator: Aggregator
    #: The aggregator's intake of PORTAL's replies, drained by the driver.
    replies: ReplyIntake
    portal: ParticipantClient
    runners: list[AdapterRunner]
    #: part id -> (its request content, the runner answering its message type)
    parts: dict[str, tuple[etree._Element, AdapterRunner]]
    #: sent -> replied of each part inside the fan-out, per part id
    in_fanout: dict[str, list[float]]

    def single(self, part_id: str) -> Callable[[], Awaitable[None]]:
        content, runner = self.parts[part_id]
        portal = self.portal
        checked = False

        async def one() -> None:
            nonlocal checked
            meta = await portal.send_request(copy.deepcopy(content))
            outcome = await runner.run_once()
            if outcome is None or not outcome.acked:
                raise RuntimeError(f"{part_id}: the adapter did not answer: {outcome}")
            delivery = await portal.get_response()
            if delivery is None or delivery.original_message_id != meta.message_id:
                raise RuntimeError(f"{part_id}: no response for {meta.message_id}")
            if not checked:
                if read_response_data(delivery.response_data).content is None:
                    raise RuntimeError(f"{part_id}: answered without data")
                checked = True
            await portal.ack(delivery.metadata.message_id)

        return one

    async def drain(self, runner: AdapterRunner) -> int:
        """Answer every request queued for ``runner``; how many."""
        done = 0
        while (outcome := await runner.run_once()) is not None:
            if not outcome.acked:
                raise RuntimeError(f"{runner.participant}: an answer was not acked: {outcome}")
            done += 1
        return done

    async def run_adapters(self) -> int:
        counts = await asyncio.gather(*(self.drain(r) for r in self.runners))
        return sum(counts)

    def finished(self, record: ServiceRequestRecord) -> None:
        state = record.state
        if state.status != "COMPLETED":
            raise RuntimeError(
                f"service request {state.id} ended {state.status} ({state.completed_by})"
            )
        for part in state.parts:
            if part.sent_at is not None and part.replied_at is not None:
                took = (part.replied_at - part.sent_at).total_seconds() * 1000
                self.in_fanout.setdefault(part.id, []).append(took)

    async def fanout(self) -> None:
        """One service request, alone: submit, adapters, pump, until final."""
        aggregator = self.aggregator
        record, _ = await aggregator.submit(
            service=SERVICE, applicant=APPLICANT, participant=PORTAL
        )
        for _round in range(MAX_ROUNDS):
            await self.run_adapters()
            await self.replies.drain()
            record = await aggregator.get(str(record.id))
            if record.state.final:
                self.finished(record)
                return
        raise RuntimeError(f"service request {record.id} not final after {MAX_ROUNDS} rounds")

    async def fanout_concurrent(self, n: int, concurrency: int, budget: float) -> Result:
        """``n`` service requests, ``concurrency`` in flight, one driver task; no new
        submission once ``budget`` seconds have gone by."""
        aggregator = self.aggregator
        loop = asyncio.get_running_loop()
        waiting: dict[str, asyncio.Future[ServiceRequestRecord]] = {}
        fresh: set[str] = set()
        stop = asyncio.Event()

        async def driver() -> None:
            while not stop.is_set():
                answered = await self.run_adapters()
                applied = await self.replies.drain()
                check = list(waiting) if applied else [i for i in waiting if i in fresh]
                fresh.clear()
                for id in check:
                    record = await aggregator.get(id)
                    if record.state.final:
                        waiting.pop(id).set_result(record)
                if not answered and not applied:
                    await asyncio.sleep(0.0005)  # nothing to do: let the submitters run

        latencies: list[float] = []
        left = n
        deadline = time.perf_counter() + budget

        async def worker() -> None:
            nonlocal left
            while left > 0 and time.perf_counter() < deadline:
                left -= 1
                began = time.perf_counter()
                record, _ = await aggregator.submit(
                    service=SERVICE, applicant=APPLICANT, participant=PORTAL
                )
                future: asyncio.Future[ServiceRequestRecord] = loop.create_future()
                waiting[str(record.id)] = future
                fresh.add(str(record.id))
                self.finished(await asyncio.wait_for(future, timeout=60))
                latencies.append((time.perf_counter() - began) * 1000)

        task = asyncio.create_task(driver())
        try:
            start = time.perf_counter()
            await asyncio.gather(*(worker() for _ in range(concurrency)))
            seconds = time.perf_counter() - start
        finally:
            stop.set()
            await task
        return Result(f"{SERVICE} (3 parts)", latencies, seconds, concurrency)


def slow_down(agencies: dict[str, MockAgency], latency_ms: int) -> None:
    """Make every mock agency wait ``latency_ms`` before each answer (its knob)."""
    for agency in agencies.values():
        control = httpx.URL(agency.url).copy_with(path="/_control", query=None)
        httpx.post(control, json={"latency_ms": latency_ms}, timeout=10).raise_for_status()


async def run(
    settings: Settings, n: int, concurrency: int, budget: float, latency_ms: int = 0
) -> tuple[list[Result], dict[str, list[float]], dict[str, list[float]]]:
    """The rows, then sent -> replied per part inside the fan-out at C = 1 and at C."""
    bus = await open_bus(settings, portals=())
    try:
        await bus.start(background=False)
        with mock_agencies() as agencies:
            slow_down(agencies, latency_ms)
            clients = {m: _client(bus, settings, m) for m in ("ZAGS", "MVD_MIGR", "FNS")}
            adapters = DemoAdapters(agencies, clients)
            try:
                aggregator = bus.aggregator
                service = aggregator.catalogue.get(SERVICE)
                runners = list(adapters.runners.values())
                parts = {
                    part.id: (
                        build_request(service, part, APPLICANT),
                        next(r for r in runners if part.message_type in r.message_types),
                    )
                    for part in service.parts
                }
                portal = _client(bus, settings, PORTAL)
                bench = Bench(aggregator, bus.replies(PORTAL), portal, runners, parts, {})
                names = [f"single: {p} ({r.participant})" for p, (_, r) in parts.items()]
                ones = [bench.single(p) for p in parts]
                names.append(f"{SERVICE} (3 parts)")
                ones.append(bench.fanout)
                rows = await interleaved(names, n, ones, budget=budget)
                sequential = dict(bench.in_fanout)
                bench.in_fanout.clear()
                if concurrency > 1:
                    for _ in range(min(concurrency, n)):  # warm-up of the driver path
                        await bench.fanout()
                    bench.in_fanout.clear()
                    rows.append(await bench.fanout_concurrent(n, concurrency, budget))
                return rows, sequential, bench.in_fanout
            finally:
                await adapters.aclose()
    finally:
        await bus.close()


# --- report ------------------------------------------------------------------------------


def fanout_ratio(rows: list[Result]) -> tuple[float, Result, Result]:
    """Fan-out p50 at C = 1 over the slowest single part's p50; the two rows."""
    singles = [r for r in rows if r.name.startswith("single:")]
    fanout = next(r for r in rows if r.name.startswith(SERVICE) and r.concurrency == 1)
    slowest = max(singles, key=lambda r: r.pct(50))
    return fanout.pct(50) / slowest.pct(50), fanout, slowest


def report(
    rows: list[Result], sequential: dict[str, list[float]], concurrent: dict[str, list[float]]
) -> dict[str, Any]:
    """Print the rows and the ratios; the figures (``benchmarks/README.md``)."""
    inside = [
        Result(f"  in fan-out C={c}: {part_id} sent->replied", lat, concurrency=c)
        for c, per_part in ((1, sequential), (rows[-1].concurrency, concurrent))
        for part_id, lat in per_part.items()
    ]
    print()
    print(table([*rows, *inside], width=52, unit="requests/s"))
    ratio, fanout, slowest = fanout_ratio(rows)
    singles = [r for r in rows if r.name.startswith("single:")]
    print(
        f"fan-out p50 / slowest single-part p50 (C=1): {fanout.pct(50):.2f} / "
        f"{slowest.pct(50):.2f} ({slowest.name.removeprefix('single: ')}) = {ratio:.2f}x"
    )
    print(
        f"  sum of the single-part p50s: {sum(r.pct(50) for r in singles):.2f} ms "
        f"(what a portal asking the three agencies one after another would pay)"
    )
    for row in rows:
        if row.name.startswith(SERVICE):
            print(f"service requests/s at C={row.concurrency}: {row.rate:.1f}")
    return {
        "fanout_ratio": ratio,
        "p50_ms": {row.label: row.pct(50) for row in rows},
        "p99_ms": {row.label: row.pct(99) for row in rows},
        "service_requests_per_s": {
            str(row.concurrency): row.rate for row in rows if row.name.startswith(SERVICE)
        },
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--requests", type=int, default=100, help="per row")
    parser.add_argument(
        "--concurrency", type=int, default=8, help="service requests in flight (1: none)"
    )
    parser.add_argument(
        "--database", help="journal URL (default: a SQLite file in the temp dir; sqlite:// = RAM)"
    )
    parser.add_argument(
        "--agency-latency-ms",
        type=int,
        default=0,
        help="every mock agency waits this long before answering (0: instantly)",
    )
    parser.add_argument(
        "--budget",
        type=float,
        default=45,
        help="seconds per phase (C=1 rows, then the concurrent row): no new request after it",
    )
    add_output_options(parser)
    args = parser.parse_args()
    configure_logging(level="WARNING")
    work = Path(tempfile.mkdtemp(prefix="smevbus-bench-fanout-"))
    keys_dir = work / "keys"
    settings = Settings(
        transport="memory",
        database_url=args.database or f"sqlite:///{work / 'journal.db'}",
        keys_dir=keys_dir,
    )
    registry = load_registry(settings)
    participants = {p.mnemonic: p.name for p in registry.participants}
    participants[registry.bus_mnemonic] = "smevbus"
    init_dev_pki(keys_dir, participants, key_type="ec", clock=SystemClock())
    print(
        f"{args.requests} requests per row; in one process: memory transport, journal "
        f"{settings.database_url}, ECDSA P-256 dev keys in {keys_dir};\nmock agencies on "
        f"threads, latency {args.agency_latency_ms} ms; real adapters; every bus call signed "
        "and verified; "
        f"C=1 rows measured interleaved; at most {args.budget:.0f} s per phase (n = done)"
    )
    started = time.perf_counter()
    concurrency = max(1, args.concurrency)
    rows, sequential, concurrent = asyncio.run(
        run(settings, max(1, args.requests), concurrency, args.budget, args.agency_latency_ms)
    )
    figures = {"benchmark": "fanout", **report(rows, sequential, concurrent)}
    print(f"\ntotal {time.perf_counter() - started:.0f} s")
    finish(args, figures)


if __name__ == "__main__":
    main()
