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
(peak, and at checkpoints) to show whether it grows with the message count. Then
the p50 of raw signed and of smevbus one round trip at a time (clients polling every
2 ms at most): the latency the bus adds, without queueing behind other round trips.
Last, the CPU ratios the targets are checked on: ``--rounds`` K rounds, each a raw
signed, a pull and a push batch of ``--round-messages`` round trips back to back, so
that both sides of a ratio are measured within seconds of each other (this host's
speed drifts by tens of per cent over a run); each side's CPU summed over its K
batches.

The gateway reaches PostgreSQL through a statement counter (``benchmarks/sqlcount.py``);
transactions are PostgreSQL's own count (``pg_stat_database``). RabbitMQ and PostgreSQL
are ``SMEVBUS_AMQP_URL`` and ``SMEVBUS_DATABASE_URL`` (a fresh vhost and database on
each). Figures, JSON keys and targets: ``benchmarks/README.md``.

Run: .venv/bin/python benchmarks/router.py [--messages 2000] [--raw-messages 2000]
[--concurrency 16] [--rounds 6] [--round-messages 300] [--algorithm ec|rsa|gost2012-256]
[--json PATH] [--check]
(``--algorithm``: the key type of every participant and of the bus; ``gost2012-256``
needs OpenSSL's gost engine)
"""

from __future__ import annotations

import argparse
import asyncio
import sys
import tempfile
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aio_pika
from lxml import etree

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from adapters.sdk.push import PushSource  # noqa: E402
from benchmarks.dbstats import settled_transactions  # noqa: E402
from benchmarks.harness import (  # noqa: E402
    Result,
    add_output_options,
    amqp_url,
    cpu_seconds,
    database_url,
    drive,
    finish,
    print_by_text,
    rss_bytes,
    table,
    text_delta,
)
from benchmarks.sqlcount import StatementCounter  # noqa: E402
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
CONTENT = ROOT / "tests" / "data" / "content"
SPRD = f"{{{SMEV_TYPES}}}SenderProvidedRequestData"
HOLDER = f"{{{SMEV_TYPES}}}CallerInformationSystemSignature"


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

        consumers = [await requests.consume(respond), await replies.consume(collect)]

        async def one() -> None:
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
        # Cancelled before the queues go, or the broker cancels them (and aiormq logs it).
        await requests.cancel(consumers[0])
        await replies.cancel(consumers[1])
        await requests.delete(if_unused=False, if_empty=False)
        await replies.delete(if_unused=False, if_empty=False)
        return result


# --- smevbus -----------------------------------------------------------------------------


@dataclass
class Run:
    result: Result
    #: (round trips done, gateway RSS in bytes) at each checkpoint.
    memory: list[tuple[int, int]]
    #: GetRequest/GetResponse calls answered "no message".
    empty_polls: int


async def smevbus_pipeline(
    gateway: GatewayProcess,
    keys: Path,
    n: int,
    concurrency: int,
    checkpoints: list[int],
    push_from: str | None = None,
    idle_cap: float = 0.05,
) -> Run:
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
    memory: list[tuple[int, int]] = []
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
                memory.append((checkpoints.pop(0), rss_bytes(pid)))

    async def one() -> None:
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
    return Run(result, memory, empty_polls)


MODES = ("pull", "push")


@dataclass
class Round:
    """A raw signed, a pull and a push batch run back to back: the ratios' two sides
    measured seconds apart, where the host's speed drifts over a whole run."""

    signed: Result
    pull: Run
    push: Run

    def gateway_ms(self, mode: str) -> float:
        """Gateway CPU per round trip of the ``mode`` ("pull", "push") batch."""
        row: Result = getattr(self, mode).result
        return row.per_call_ms(row.gateway_cpu_s)

    @staticmethod
    def ratio(rounds: list[Round]) -> dict[str, float]:
        """Gateway CPU over all round trips of a mode / raw signed CPU over all of its."""
        raw = sum(r.signed.cpu_s for r in rounds) / sum(r.signed.n for r in rounds)
        return {
            mode: sum(getattr(r, mode).result.gateway_cpu_s for r in rounds)
            / sum(getattr(r, mode).result.n for r in rounds)
            / raw
            for mode in MODES
        }


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
    parser.add_argument(
        "--rounds",
        type=int,
        default=6,
        metavar="K",
        help="the CPU ratios from K rounds, each a raw signed, a pull and a push batch of "
        "--round-messages round trips back to back (0: from the rows, bracketed)",
    )
    parser.add_argument("--round-messages", type=int, default=300, metavar="M")
    parser.add_argument(
        "--statements-by-text",
        type=int,
        default=0,
        metavar="N",
        help="print the N SQL texts sent most often per pull and per push round trip",
    )
    add_output_options(parser)
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
    conc, amqp = args.concurrency, amqp_url()
    raw = asyncio.run(raw_pipeline(amqp, args.raw_messages, conc, None))
    signed = asyncio.run(raw_pipeline(amqp, args.raw_messages, conc, crypto))
    signed_alone = asyncio.run(raw_pipeline(amqp, ALONE, 1, crypto))

    with (
        isolated_vhost(amqp) as vhost,
        fresh_database(database_url()) as database,
        StatementCounter(database, by_text=args.statements_by_text > 0) as counter,
    ):
        gateway = GatewayProcess(
            env={
                "SMEVBUS_TRANSPORT": "amqp",
                "SMEVBUS_AMQP_URL": vhost,
                "SMEVBUS_DATABASE_URL": counter.route(database),
                "SMEVBUS_KEYS_DIR": str(keys),
                "SMEVBUS_LOG_LEVEL": "WARNING",
            },
            log_path=Path(tempfile.mkdtemp()) / "gateway.log",
        )
        gateway.start()
        try:
            xacts, statements = [settled_transactions(database)], [counter.statements]
            texts = [counter.by_text() if counter.counts_text else {}]
            pull = asyncio.run(
                smevbus_pipeline(gateway, keys, args.messages, conc, sorted(checkpoints))
            )
            statements.append(counter.statements)
            xacts.append(settled_transactions(database))
            texts.append(counter.by_text() if counter.counts_text else {})
            push = asyncio.run(
                smevbus_pipeline(gateway, keys, args.raw_messages, conc, [], push_from=vhost)
            )
            statements.append(counter.statements)
            xacts.append(settled_transactions(database))
            texts.append(counter.by_text() if counter.counts_text else {})
            # One at a time, polling every 2 ms at most: the bus's own latency, without
            # queueing behind other round trips or a poller's back-off.
            alone = asyncio.run(
                smevbus_pipeline(gateway, keys, ALONE, 1, [], push_from=vhost, idle_cap=0.002)
            )
            rounds = [
                Round(
                    asyncio.run(raw_pipeline(amqp, args.round_messages, conc, crypto)),
                    asyncio.run(smevbus_pipeline(gateway, keys, args.round_messages, conc, [])),
                    asyncio.run(
                        smevbus_pipeline(
                            gateway, keys, args.round_messages, conc, [], push_from=vhost
                        )
                    ),
                )
                for _ in range(args.rounds)
            ]
        finally:
            gateway.stop()
    # Again after the gateway's rows: the ratio's two sides bracket the same minutes (this
    # host's speed drifts by tens of per cent between runs).
    signed_after = asyncio.run(raw_pipeline(amqp, args.raw_messages, conc, crypto))

    ours, pushed = pull.result, push.result
    print(f"concurrency {conc}; persistent messages, publisher confirms, quorum queues")
    print(table((raw, signed, ours, pushed), width=28, unit="round trips/s"))
    rows = {"raw_aiopika": raw, "raw_signed": signed, "pull": ours, "push": pushed}
    raw_bracket = [signed.per_call_ms(signed.cpu_s), signed_after.per_call_ms(signed_after.cpu_s)]
    raw_cpu = sum(raw_bracket) / 2
    gateway_cpu = {
        "pull": ours.per_call_ms(ours.gateway_cpu_s),
        "push": pushed.per_call_ms(pushed.gateway_cpu_s),
    }
    ratio_rows = {key: ms / raw_cpu for key, ms in gateway_cpu.items()}
    ratios = ratio_rows if not rounds else Round.ratio(rounds)
    memory = {count: rss for count, rss in pull.memory}
    first, last = pull.memory[0], pull.memory[-1]
    figures: dict[str, Any] = {
        "benchmark": "router",
        "algorithm": args.algorithm,
        "concurrency": conc,
        "round_trips": {key: row.n for key, row in rows.items()},
        "round_trips_per_s": {key: row.rate for key, row in rows.items()},
        "p50_ms": {key: row.pct(50) for key, row in rows.items()},
        "p99_ms": {key: row.pct(99) for key, row in rows.items()},
        "raw_signed_cpu_ms_per_round_trip": raw_cpu,
        "raw_signed_cpu_ms_before_after": raw_bracket,
        "gateway_cpu_ms_per_round_trip": gateway_cpu,
        "cpu_ratio_to_raw_signed": ratios,
        "cpu_ratio_rows": ratio_rows,
        "cpu_ratio_rounds": {
            "rounds": len(rounds),
            "round_trips_each": args.round_messages,
            **{mode: [r.gateway_ms(mode) / r.signed.cpu_ms for r in rounds] for mode in MODES},
            "raw_signed_cpu_ms": [r.signed.cpu_ms for r in rounds],
            "gateway_cpu_ms": {mode: [r.gateway_ms(mode) for r in rounds] for mode in MODES},
        },
        "client_cpu_ms_per_round_trip": {
            "pull": ours.per_call_ms(ours.cpu_s),
            "push": pushed.per_call_ms(pushed.cpu_s),
        },
        "transactions_per_round_trip": {
            "pull": (xacts[1] - xacts[0]) / ours.n,
            "push": (xacts[2] - xacts[1]) / pushed.n,
        },
        "sql_statements_per_round_trip": {
            "pull": (statements[1] - statements[0]) / ours.n,
            "push": (statements[2] - statements[1]) / pushed.n,
        },
        "empty_polls": {"pull": pull.empty_polls, "push": push.empty_polls},
        "gateway_rss_mib": {str(count): rss / 2**20 for count, rss in memory.items()},
        "rss_growth": (last[1] - first[1]) / first[1] if len(pull.memory) >= 2 else None,
        "alone_p50_ms": {"raw_signed": signed_alone.pct(50), "push": alone.result.pct(50)},
    }
    print(
        f"smevbus / raw signed: throughput {ours.rate / signed.rate:.0%}, "
        f"p50 {ours.pct(50) / signed.pct(50):.1f}x; with a push provider: throughput "
        f"{pushed.rate / signed.rate:.0%}, p50 {pushed.pct(50) / signed.pct(50):.1f}x"
    )
    for count, rss in memory.items():
        print(f"gateway RSS after {count} round trips: {rss / 2**20:.1f} MiB")
    print(
        f"CPU per round trip: raw signed {raw_cpu:.2f} ms (both ends, one process; "
        f"{raw_bracket[0]:.2f} before the gateway's rows, {raw_bracket[1]:.2f} after); "
        f"gateway: pull {gateway_cpu['pull']:.2f} ms, push provider {gateway_cpu['push']:.2f} "
        f"ms; their clients: pull {ours.per_call_ms(ours.cpu_s):.2f} ms (6 signed SOAP calls, "
        f"every reply checked), push {pushed.per_call_ms(pushed.cpu_s):.2f} ms (4 SOAP calls)"
    )
    per_trip = figures["transactions_per_round_trip"], figures["sql_statements_per_round_trip"]
    print(
        "per round trip, empty polls included: database transactions (pg_stat_database) "
        f"pull {per_trip[0]['pull']:.2f}, push {per_trip[0]['push']:.2f}; SQL statements "
        f"(on the wire) pull {per_trip[1]['pull']:.2f}, push {per_trip[1]['push']:.2f}; "
        f"empty polls pull {pull.empty_polls}, push {push.empty_polls}"
    )
    print(
        f"CPU ratio gateway / raw signed from these rows (raw signed bracketing them): "
        f"pull {ratio_rows['pull']:.2f}, push {ratio_rows['push']:.2f}"
    )
    if rounds:
        each = figures["cpu_ratio_rounds"]
        print(
            f"CPU ratio from {len(rounds)} rounds of {args.round_messages} round trips each "
            f"(raw signed, pull, push back to back; all CPU of a side over all its round "
            f"trips): pull {ratios['pull']:.2f} (rounds "
            + ", ".join(f"{r:.2f}" for r in each["pull"])
            + f"), push {ratios['push']:.2f} (rounds "
            + ", ".join(f"{r:.2f}" for r in each["push"])
            + ")"
        )
    print(
        f"one at a time: raw signed p50 {signed_alone.pct(50):.2f} ms, smevbus (push provider) "
        f"p50 {alone.result.pct(50):.2f} ms = {alone.result.pct(50) / signed_alone.pct(50):.1f}x"
    )
    if args.statements_by_text:
        for name, row, before, after in (("pull", ours, *texts[:2]), ("push", pushed, *texts[1:])):
            unit = f"{name} round trip"
            print_by_text(text_delta(before, after), row.n, args.statements_by_text, unit)
    finish(args, figures)


if __name__ == "__main__":
    main()
