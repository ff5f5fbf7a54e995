"""Request -> reply round trips: raw aio-pika, a raw signed pipeline, and smevbus.

Prints, in one run against the local RabbitMQ (and PostgreSQL for smevbus):

1. raw aio-pika: publish (persistent, confirmed) to a quorum queue -> a responder
   consumes, publishes the reply (confirmed) -> the requester consumes it;
2. raw signed pipeline: the same, plus sign request -> verify -> sign reply -> verify
   (xmlsec, the smevbus key material): the floor for any signed bus;
3. smevbus: a real ``smevbus serve`` process (AMQP + PostgreSQL journal), clients over
   HTTP: SendRequest -> provider GetRequest, SendResponse, Ack -> consumer
   GetResponse, Ack. Every call signed by the caller, verified and journaled by the
   bus, every reply signed by the bus and verified by the client;

each as p50/p99 round-trip latency and round trips per second at the same
concurrency, the ratios smevbus/raw-signed, and the gateway's resident memory
(peak, and at checkpoints) to show whether it grows with the message count. Last,
the p50 of raw signed and of smevbus one round trip at a time (clients polling every
2 ms at most): the latency the bus adds, without queueing behind other round trips.

Run: .venv/bin/python benchmarks/router.py [--messages 2000] [--concurrency 16]
[--algorithm ec|rsa|gost2012-256] (the key type of every participant and of the bus;
``gost2012-256`` needs OpenSSL's gost engine)
"""

from __future__ import annotations

import argparse
import asyncio
import os
import statistics
import sys
import tempfile
import time
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path

import aio_pika
from lxml import etree

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from adapters.sdk.push import PushSource  # noqa: E402
from benchmarks.dbstats import settled_transactions  # noqa: E402
from gateway.client.http import SoapHttp  # noqa: E402
from gateway.client.participant import ParticipantClient  # noqa: E402
from gateway.core import backoff  # noqa: E402
from gateway.core.clock import SystemClock  # noqa: E402
from gateway.crypto.devpki import KEY_TYPES, init_dev_pki  # noqa: E402
from gateway.crypto.keystore import load_signer, load_verifier  # noqa: E402
from gateway.crypto.xmldsig import XmlSigner, XmlVerifier  # noqa: E402
from gateway.testing.processes import (  # noqa: E402
    GatewayProcess,
    fresh_database,
    isolated_vhost,
)
from gateway.transport.amqp import AmqpTransport  # noqa: E402
from gateway.xml import messages  # noqa: E402
from gateway.xml.namespaces import SMEV_TYPES  # noqa: E402
from gateway.xml.parse import parse_secure  # noqa: E402

#: Round trips of the one-at-a-time latency rows.
ALONE = 300
AMQP = "amqp://guest:guest@127.0.0.1:5672/"
CONTENT = ROOT / "tests" / "data" / "content"
SPRD = f"{{{SMEV_TYPES}}}SenderProvidedRequestData"
HOLDER = f"{{{SMEV_TYPES}}}CallerInformationSystemSignature"


@dataclass
class Result:
    name: str
    latencies_ms: list[float]
    seconds: float
    #: CPU seconds this (client) process spent on the run.
    cpu_s: float = 0.0
    #: CPU seconds the gateway process spent on it (smevbus only).
    gateway_cpu_s: float = 0.0

    def cpu_ms(self, seconds: float) -> float:
        """``seconds`` of CPU per round trip, in ms."""
        return seconds * 1000 / len(self.latencies_ms)

    @property
    def rate(self) -> float:
        return len(self.latencies_ms) / self.seconds

    def pct(self, p: float) -> float:
        ordered = sorted(self.latencies_ms)
        return ordered[min(len(ordered) - 1, int(p / 100 * len(ordered)))]

    def line(self) -> str:
        return (
            f"{self.name:<28}{len(self.latencies_ms):>8}{self.pct(50):>10.2f}"
            f"{self.pct(99):>10.2f}{self.rate:>12.1f}"
        )


async def drive(
    name: str, n: int, concurrency: int, one: Callable[[int], Awaitable[None]]
) -> Result:
    latencies: list[float] = []
    queue: asyncio.Queue[int] = asyncio.Queue()
    for i in range(n):
        queue.put_nowait(i)

    async def worker() -> None:
        while not queue.empty():
            i = queue.get_nowait()
            began = time.perf_counter()
            await one(i)
            latencies.append((time.perf_counter() - began) * 1000)

    start, cpu = time.perf_counter(), time.process_time()
    await asyncio.gather(*(worker() for _ in range(concurrency)))
    return Result(name, latencies, time.perf_counter() - start, time.process_time() - cpu)


# --- raw aio-pika ----------------------------------------------------------------------


def _sign(signer: XmlSigner, doc: etree._Element) -> bytes:
    target = doc.find(SPRD)
    assert target is not None
    signer.sign(target, etree.SubElement(doc, HOLDER))
    return etree.tostring(doc)


def _verify(verifier: XmlVerifier, body: bytes) -> None:
    doc = parse_secure(body)
    target = doc.find(SPRD)
    signature = doc.find(f"{HOLDER}/{{http://www.w3.org/2000/09/xmldsig#}}Signature")
    assert target is not None
    assert signature is not None
    verifier.verify(target, signature)


async def raw_pipeline(
    url: str, n: int, concurrency: int, crypto: tuple[XmlSigner, XmlSigner, XmlVerifier] | None
) -> Result:
    connection = await aio_pika.connect_robust(url)
    async with connection:
        channel = await connection.channel(publisher_confirms=True)
        suffix = uuid.uuid4().hex[:8]
        args = {"x-queue-type": "quorum"}
        requests = await channel.declare_queue(f"bench.req.{suffix}", durable=True, arguments=args)
        replies = await channel.declare_queue(f"bench.rep.{suffix}", durable=True, arguments=args)
        await channel.set_qos(prefetch_count=concurrency * 2)
        waiting: dict[str, asyncio.Future[bytes]] = {}
        content = parse_secure((CONTENT / "zags-birth-record.request.xml").read_bytes())
        answer = parse_secure((CONTENT / "zags-birth-record.response.xml").read_bytes())

        def document(payload: etree._Element) -> etree._Element:
            return messages.build_send_request(uuid.uuid1(), payload)

        async def respond(message: aio_pika.abc.AbstractIncomingMessage) -> None:
            if crypto is not None:
                _verify(crypto[2], message.body)
                body = _sign(crypto[1], document(answer))
            else:
                body = etree.tostring(document(answer))
            await channel.default_exchange.publish(
                aio_pika.Message(
                    body,
                    delivery_mode=aio_pika.DeliveryMode.PERSISTENT,
                    correlation_id=message.correlation_id,
                ),
                routing_key=replies.name,
                mandatory=True,
            )
            await message.ack()

        async def collect(message: aio_pika.abc.AbstractIncomingMessage) -> None:
            future = waiting.pop(message.correlation_id or "", None)
            await message.ack()
            if future is not None and not future.done():
                future.set_result(message.body)

        await requests.consume(respond)
        await replies.consume(collect)

        async def one(_: int) -> None:
            doc = document(content)
            body = _sign(crypto[0], doc) if crypto is not None else etree.tostring(doc)
            correlation = uuid.uuid4().hex
            future: asyncio.Future[bytes] = asyncio.get_running_loop().create_future()
            waiting[correlation] = future
            await channel.default_exchange.publish(
                aio_pika.Message(
                    body,
                    delivery_mode=aio_pika.DeliveryMode.PERSISTENT,
                    correlation_id=correlation,
                ),
                routing_key=requests.name,
                mandatory=True,
            )
            reply = await future
            if crypto is not None:
                _verify(crypto[2], reply)

        name = "raw signed pipeline" if crypto else "raw aio-pika"
        result = await drive(name, n, concurrency, one)
        await requests.delete(if_unused=False, if_empty=False)
        await replies.delete(if_unused=False, if_empty=False)
        return result


# --- smevbus -----------------------------------------------------------------------------


def cpu_seconds(pid: int) -> float:
    """CPU seconds (user + system) process ``pid`` has used so far."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def _rss_kb(pid: int) -> tuple[int, int]:
    fields = dict(
        line.split(":", 1) for line in Path(f"/proc/{pid}/status").read_text().splitlines()
    )
    return int(fields["VmRSS"].split()[0]), int(fields["VmHWM"].split()[0])


async def smevbus_pipeline(
    gateway: GatewayProcess,
    keys: Path,
    n: int,
    concurrency: int,
    checkpoints: list[int],
    push_from: str | None = None,
    idle_cap: float = 0.05,
) -> tuple[Result, list[tuple[int, int, int]]]:
    """Round trips through ``gateway``; with ``push_from`` (the broker URL) the provider
    consumes its queue by push, as ``smevbus adapter`` does by default, instead of
    GetRequest + Ack."""
    clock = SystemClock()
    verifier = load_verifier(keys, clock)
    call = SoapHttp(gateway.base_url + "/ws", max_connections=64)
    idle_backoff = backoff.exponential(0.002, idle_cap)

    def client(who: str) -> ParticipantClient:
        return ParticipantClient(
            signer=load_signer(keys, who), verifier=verifier, clock=clock, call=call
        )

    portal, zags = client("PORTAL"), client("ZAGS")
    content = parse_secure((CONTENT / "zags-birth-record.request.xml").read_bytes())
    answer = parse_secure((CONTENT / "zags-birth-record.response.xml").read_bytes())
    waiting: dict[str, asyncio.Future[None]] = {}
    done = asyncio.Event()
    memory: list[tuple[int, int, int]] = []
    completed = 0
    empty_polls = 0
    assert gateway.process is not None
    pid = gateway.process.pid

    transport = None if push_from is None else await AmqpTransport.connect(push_from)
    if transport is not None:
        await transport.declare(["ZAGS"])  # as the gateway did: a no-op, needed to consume

    async def pushed_provider() -> None:
        assert transport is not None
        source = PushSource(transport, "ZAGS", verifier, clock=clock, wait=0.05)
        try:
            while not done.is_set():
                inbound = await source.next()
                if inbound is not None:
                    await zags.send_response(inbound.delivery.reply_to, content=answer)
                    await inbound.ack()
        finally:
            await source.close()

    async def provider() -> None:
        nonlocal empty_polls
        idle = 0
        while not done.is_set():
            delivery = await zags.get_request()
            if delivery is None:
                # Pull protocol: an empty poll; back off as a real client does.
                idle += 1
                empty_polls += 1
                await asyncio.sleep(backoff.delay(idle_backoff, idle))
                continue
            idle = 0
            await zags.send_response(delivery.reply_to, content=answer)
            await zags.ack(delivery.metadata.message_id)

    async def consumer() -> None:
        nonlocal completed, empty_polls
        idle = 0
        while not done.is_set():
            delivery = await portal.get_response()
            if delivery is None:
                idle += 1
                empty_polls += 1
                await asyncio.sleep(backoff.delay(idle_backoff, idle))
                continue
            idle = 0
            await portal.ack(delivery.metadata.message_id)
            future = waiting.pop(str(delivery.original_message_id), None)
            if future is not None and not future.done():
                future.set_result(None)
            completed += 1
            if checkpoints and completed >= checkpoints[0]:
                rss, peak = _rss_kb(pid)
                memory.append((checkpoints.pop(0), rss, peak))

    async def one(_: int) -> None:
        message_id = portal.ids.new()
        future: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        waiting[str(message_id)] = future
        await portal.send_request(content, message_id=message_id)
        await future

    gateway_cpu = cpu_seconds(pid)
    serve = provider if transport is None else pushed_provider
    pumps = [asyncio.create_task(serve()) for _ in range(max(2, concurrency // 2))]
    pumps += [asyncio.create_task(consumer()) for _ in range(max(2, concurrency // 2))]
    name = "smevbus (SOAP over HTTP)" if transport is None else "smevbus, provider by push"
    result = await drive(name, n, concurrency, one)
    result.gateway_cpu_s = cpu_seconds(pid) - gateway_cpu
    done.set()
    await asyncio.gather(*pumps)
    if transport is not None:
        await transport.close()
    await call.close()
    print(f"empty polls (GetRequest/GetResponse answered 'no message'): {empty_polls}")
    return result, memory


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--messages", type=int, default=2000)
    parser.add_argument("--raw-messages", type=int, default=2000)
    parser.add_argument("--concurrency", type=int, default=16)
    parser.add_argument(
        "--algorithm", choices=KEY_TYPES, default="ec", help="key type of all participants"
    )
    parser.add_argument(
        "--checkpoints", default="", help="comma-separated counts at which to read gateway RSS"
    )
    args = parser.parse_args()
    checkpoints = [int(c) for c in args.checkpoints.split(",") if c] or [
        max(1, args.messages // 5),
        args.messages,
    ]

    keys = Path(tempfile.mkdtemp(prefix="smevbus-bench-keys-"))
    init_dev_pki(
        keys,
        {m: m for m in ("PORTAL", "ZAGS", "MVD_MIGR", "FNS", "SMEVBUS")},
        key_type=args.algorithm,
        clock=SystemClock(),
    )
    print(f"keys: {args.algorithm}")
    clock = SystemClock()
    crypto = (load_signer(keys, "PORTAL"), load_signer(keys, "ZAGS"), load_verifier(keys, clock))
    conc = args.concurrency
    raw = asyncio.run(raw_pipeline(AMQP, args.raw_messages, conc, None))
    signed = asyncio.run(raw_pipeline(AMQP, args.raw_messages, conc, crypto))
    signed_alone = asyncio.run(raw_pipeline(AMQP, ALONE, 1, crypto))

    with isolated_vhost(AMQP) as vhost, fresh_database() as database:
        gateway = GatewayProcess(
            env={
                "SMEVBUS_TRANSPORT": "amqp",
                "SMEVBUS_AMQP_URL": vhost,
                "SMEVBUS_DATABASE_URL": database,
                "SMEVBUS_KEYS_DIR": str(keys),
                "SMEVBUS_LOG_LEVEL": "WARNING",
            },
            log_path=Path(tempfile.mkdtemp()) / "gateway.log",
        )
        gateway.start()
        try:
            xacts = [settled_transactions(database)]
            ours, memory = asyncio.run(
                smevbus_pipeline(gateway, keys, args.messages, conc, sorted(checkpoints))
            )
            xacts.append(settled_transactions(database))
            pushed, _ = asyncio.run(
                smevbus_pipeline(gateway, keys, args.raw_messages, conc, [], push_from=vhost)
            )
            xacts.append(settled_transactions(database))
            # One at a time, polling every 2 ms at most: the bus's own latency, without
            # queueing behind other round trips or a poller's back-off.
            alone, _ = asyncio.run(
                smevbus_pipeline(gateway, keys, ALONE, 1, [], push_from=vhost, idle_cap=0.002)
            )
        finally:
            gateway.stop()

    header = f"{'pipeline':<28}{'n':>8}{'p50 ms':>10}{'p99 ms':>10}{'round trips/s':>14}"
    print(f"concurrency {conc}; persistent messages, publisher confirms, quorum queues")
    print(header)
    print("-" * len(header))
    for result in (raw, signed, ours, pushed):
        print(result.line())
    print("-" * len(header))
    print(
        f"smevbus / raw signed: throughput {ours.rate / signed.rate:.0%} (target >= 50 %), "
        f"p50 {ours.pct(50) / signed.pct(50):.1f}x (target <= 2x)"
    )
    print(f"smevbus / raw aio-pika: throughput {ours.rate / raw.rate:.0%}")
    print(
        f"smevbus with a push provider / raw signed: throughput {pushed.rate / signed.rate:.0%}, "
        f"p50 {pushed.pct(50) / signed.pct(50):.1f}x"
    )
    for count, rss, peak in memory:
        print(
            f"gateway RSS after {count} round trips: {rss / 1024:.1f} MiB (peak {peak / 1024:.1f})"
        )
    if len(memory) >= 2:
        first, last = memory[0][1], memory[-1][1]
        print(
            f"RSS growth {memory[0][0]} -> {memory[-1][0]} round trips: "
            f"{(last - first) / first:+.1%} (target < 10 %)"
        )
    print(
        f"CPU per round trip: raw signed {signed.cpu_ms(signed.cpu_s):.1f} ms (both ends, one "
        f"process); smevbus: gateway {ours.cpu_ms(ours.gateway_cpu_s):.1f} ms + its clients "
        f"{ours.cpu_ms(ours.cpu_s):.1f} ms (6 signed SOAP calls, every reply checked); "
        f"push provider: gateway {pushed.cpu_ms(pushed.gateway_cpu_s):.1f} ms + clients "
        f"{pushed.cpu_ms(pushed.cpu_s):.1f} ms (4 SOAP calls)"
    )
    print(
        "database transactions per round trip (pg_stat_database, empty polls included): "
        f"pull {(xacts[1] - xacts[0]) / len(ours.latencies_ms):.2f} (target <= 8), "
        f"push provider {(xacts[2] - xacts[1]) / len(pushed.latencies_ms):.2f}"
    )
    print(
        f"one at a time: raw signed p50 {signed_alone.pct(50):.2f} ms, smevbus (push provider) "
        f"p50 {alone.pct(50):.2f} ms = {alone.pct(50) / signed_alone.pct(50):.1f}x"
    )
    print(f"median latency check: {statistics.median(ours.latencies_ms):.2f} ms")


if __name__ == "__main__":
    main()
