"""CPU of the AMQP work of a round trip: the gateway's transport against leaner clients.

Every pull round trip makes two confirmed publishes, two ``basic.get`` and two acks
(push: two publishes, one get, one ack). This measures, on uvloop as ``smevbus serve``
runs, the CPU of a publish (persistent, ``mandatory``, confirmed, to a quorum queue)
and of a take (a ``basic.get`` and its ack) made by:

1. the gateway's :class:`~gateway.transport.amqp.AmqpTransport` (its lane: pika's
   asyncio connection, riding out reconnects, as the router calls it;
   :mod:`gateway.transport.amqp_lane`);
2. aiormq alone, on one confirm-mode channel (what aio-pika runs on, and the path the
   transport took before the lane; no reconnects);
3. a minimal client written here: pamqp's frames on an asyncio protocol, one write per
   operation, no task, queue or lock between the socket and the caller. It is not a
   transport (no reconnect, no flow control, no TLS, no heartbeats): it is the floor of
   what a purpose-built client of the same broker, in Python, costs for the same frames.

The three take turns in ``--rounds`` rounds, each client ``--cycles`` publishes and
then as many takes, so the host's drift hits them alike; CPU is this process's (the
broker's is not counted). Priced per pull round trip (2 publishes, 2 takes) and per
push round trip (2 publishes, 1 take), the gap between 1 and 3 is what the AMQP
library costs the gateway above the work's own floor, and 2 over 1 what the lane saves.
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import sys
from collections import deque
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path
from typing import Any, cast
from urllib.parse import unquote, urlsplit

import aiormq
import uvloop
from pamqp import body as amqp_body
from pamqp import commands, frame, header
from pamqp.heartbeat import Heartbeat

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from benchmarks.harness import add_output_options, amqp_url, drive, finish
from gateway.core.clock import SystemClock
from gateway.testing.processes import isolated_vhost
from gateway.transport import amqp_wire
from gateway.transport.amqp import AmqpTransport
from gateway.transport.base import Direction, Message
from gateway.transport.topology import exchange_name, queue_name

PARTICIPANT = "ZAGS"
BODY = b"<x>" + b"a" * 1500 + b"</x>"  # about a signed SendRequest's size


class MiniAmqp(asyncio.Protocol):
    """Just enough AMQP 0-9-1 for the three operations, on channel 1 in confirm mode."""

    def __init__(self, vhost: str, user: str, password: str) -> None:
        self._vhost, self._user, self._password = vhost, user, password
        self._buffer = bytearray()
        self._transport: asyncio.Transport | None = None
        self._replies: deque[asyncio.Future[Any]] = deque()
        self._confirms: dict[int, asyncio.Future[None]] = {}
        self._published = 0
        self._getting: asyncio.Future[tuple[int, bytes] | None] | None = None
        self._get_ok: commands.Basic.GetOk | None = None
        self._content_size = 0
        self._content = bytearray()
        self._loop = asyncio.get_running_loop()

    @classmethod
    async def open(cls, url: str) -> MiniAmqp:
        parts = urlsplit(url)
        vhost = unquote(parts.path[1:]) or "/"
        client = cls(vhost, parts.username or "guest", parts.password or "guest")
        opened = client._expect()
        await client._loop.create_connection(
            lambda: client, parts.hostname or "127.0.0.1", parts.port or 5672
        )
        await opened  # Connection.OpenOk
        await client._rpc(commands.Channel.Open())
        await client._rpc(commands.Confirm.Select())
        return client

    def close(self) -> None:
        if self._transport is not None:
            self._transport.close()

    async def publish(self, exchange: str, key: str, body: bytes, properties: Any) -> None:
        self._published += 1
        confirmed = self._loop.create_future()
        self._confirms[self._published] = confirmed
        self._send(
            frame.marshal(
                commands.Basic.Publish(exchange=exchange, routing_key=key, mandatory=True), 1
            )
            + frame.marshal(header.ContentHeader(0, len(body), properties), 1)
            + frame.marshal(amqp_body.ContentBody(body), 1)
        )
        await confirmed

    async def get(self, queue: str) -> tuple[int, bytes] | None:
        self._getting = self._loop.create_future()
        self._send(frame.marshal(commands.Basic.Get(queue=queue), 1))
        return await self._getting

    def ack(self, delivery_tag: int) -> None:
        self._send(frame.marshal(commands.Basic.Ack(delivery_tag=delivery_tag), 1))

    # -- the wire

    def _expect(self) -> asyncio.Future[Any]:
        waiter: asyncio.Future[Any] = self._loop.create_future()
        self._replies.append(waiter)
        return waiter

    async def _rpc(self, method: Any) -> Any:
        waiter = self._expect()
        self._send(frame.marshal(method, 1))
        return await waiter

    def _send(self, data: bytes) -> None:
        assert self._transport is not None
        self._transport.write(data)

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # uvloop's TCPTransport is not an asyncio.Transport subclass, but has write().
        self._transport = cast(asyncio.Transport, transport)
        self._send(frame.marshal(header.ProtocolHeader(), 0))

    def data_received(self, data: bytes) -> None:
        self._buffer += data
        while len(self._buffer) >= 8:
            size = int.from_bytes(self._buffer[3:7], "big") + 8
            if len(self._buffer) < size:
                return
            _, _, value = frame.unmarshal(bytes(self._buffer[:size]))
            del self._buffer[:size]
            self._received(value)

    def _received(self, value: Any) -> None:
        if isinstance(value, commands.Basic.Ack):
            tags = [value.delivery_tag]
            if value.multiple:
                tags = [tag for tag in self._confirms if tag <= value.delivery_tag]
            for tag in tags:
                confirmed = self._confirms.pop(tag, None)
                if confirmed is not None and not confirmed.done():
                    confirmed.set_result(None)
        elif isinstance(value, commands.Basic.GetOk):
            self._get_ok, self._content = value, bytearray()
        elif isinstance(value, header.ContentHeader):
            self._content_size = value.body_size
            self._content_done()
        elif isinstance(value, amqp_body.ContentBody):
            self._content += value.value
            self._content_done()
        elif isinstance(value, commands.Basic.GetEmpty):
            self._resolve_get(None)
        elif isinstance(value, commands.Connection.Start):
            self._send(
                frame.marshal(
                    commands.Connection.StartOk(
                        client_properties={"product": "benchmark"},
                        mechanism="PLAIN",
                        response=f"\0{self._user}\0{self._password}",
                    ),
                    0,
                )
            )
        elif isinstance(value, commands.Connection.Tune):
            self._send(
                frame.marshal(commands.Connection.TuneOk(value.channel_max, value.frame_max, 0), 0)
                + frame.marshal(commands.Connection.Open(virtual_host=self._vhost), 0)
            )
        elif isinstance(value, Heartbeat):
            pass
        elif isinstance(value, commands.Basic.Nack | commands.Basic.Return):
            # Raised in the publisher, not in this callback (where the loop would only
            # log it and the publish wait for ever). Publishes here go one at a time.
            for confirmed in self._confirms.values():
                if not confirmed.done():
                    confirmed.set_exception(RuntimeError(f"refused: {value!r}"))
        else:  # the synchronous replies, in order
            self._replies.popleft().set_result(value)

    def _content_done(self) -> None:
        if self._get_ok is not None and len(self._content) >= self._content_size:
            tag, self._get_ok = self._get_ok.delivery_tag, None
            assert tag is not None  # a GetOk always carries one
            self._resolve_get((tag, bytes(self._content)))

    def _resolve_get(self, result: tuple[int, bytes] | None) -> None:
        assert self._getting is not None
        self._getting.set_result(result)


Step = Callable[[], Awaitable[None]]


@dataclass(frozen=True)
class Client:
    """One client's two steps: a confirmed publish, and a ``basic.get`` with its ack."""

    publish: Step
    take: Step


async def clients(url: str) -> tuple[dict[str, Client], Callable[[], Awaitable[None]]]:
    """The three clients on one queue, and how to close them."""
    clock = SystemClock()
    transport = await AmqpTransport.connect(url)
    await transport.declare([PARTICIPANT])
    exchange = exchange_name(Direction.REQUESTS)
    queue = queue_name(Direction.REQUESTS, PARTICIPANT)

    def message() -> Message:
        return Message(
            message_id="m", body=BODY, headers={}, expires_at=clock.now() + timedelta(hours=1)
        )

    async def gateway_publish() -> None:
        await transport.publish(Direction.REQUESTS, PARTICIPANT, message())

    async def gateway_take() -> None:
        delivery = await transport.get(Direction.REQUESTS, PARTICIPANT)
        assert delivery is not None
        await delivery.ack()

    connection = await aiormq.connect(url)
    channel = await connection.channel(publisher_confirms=True, on_return_raises=True)

    def pamqp_properties() -> commands.Basic.Properties:
        # What amqp_wire.to_properties builds for pika, in pamqp's class.
        lane = amqp_wire.to_properties(message(), clock.now())
        return commands.Basic.Properties(
            message_id=lane.message_id,
            headers=lane.headers,
            expiration=lane.expiration,
            delivery_mode=lane.delivery_mode,
        )

    async def aiormq_publish() -> None:
        properties = pamqp_properties()
        await channel.basic_publish(
            BODY, exchange=exchange, routing_key=PARTICIPANT, properties=properties, mandatory=True
        )

    async def aiormq_take() -> None:
        got = await channel.basic_get(queue, no_ack=False)
        assert got.delivery_tag is not None
        await channel.basic_ack(got.delivery_tag)

    mini = await MiniAmqp.open(url)

    async def mini_publish() -> None:
        properties = pamqp_properties()
        await mini.publish(exchange, PARTICIPANT, BODY, properties)

    async def mini_take() -> None:
        got = await mini.get(queue)
        assert got is not None
        mini.ack(got[0])

    async def close() -> None:
        mini.close()
        await connection.close()
        await transport.close()

    return {
        "gateway transport": Client(gateway_publish, gateway_take),
        "aiormq": Client(aiormq_publish, aiormq_take),
        "minimal": Client(mini_publish, mini_take),
    }, close


async def cpu_us(step: Step, calls: int) -> float:
    """Microseconds of this process's CPU per call of ``step``, ``calls`` in a row."""
    return (await drive("step", calls, 1, step)).cpu_ms * 1000


async def measure(url: str, rounds: int, cycles: int) -> dict[str, dict[str, list[float]]]:
    """Per client, the CPU of a publish and of a take, one figure per round."""
    client_of, close = await clients(url)
    cpu: dict[str, dict[str, list[float]]] = {
        name: {"publish": [], "take": []} for name in client_of
    }
    try:
        for client in client_of.values():  # warm up: first calls, queue handles
            await cpu_us(client.publish, 20)
            await cpu_us(client.take, 20)
        for _ in range(rounds):
            for name, client in client_of.items():
                cpu[name]["publish"].append(await cpu_us(client.publish, cycles))
                cpu[name]["take"].append(await cpu_us(client.take, cycles))
    finally:
        await close()
    return cpu


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=8)
    parser.add_argument("--cycles", type=int, default=300)
    add_output_options(parser)
    args = parser.parse_args()
    with isolated_vhost(amqp_url()) as vhost:
        cpu = uvloop.run(measure(vhost, args.rounds, args.cycles))
    mean = {
        name: {step: statistics.fmean(values) for step, values in steps.items()}
        for name, steps in cpu.items()
    }
    # A pull round trip: 2 publishes, 2 takes; push: 2 publishes, 1 take (the provider
    # consumes the request on its own connection). In ms, as the JSON has them.
    pull = {name: (2 * m["publish"] + 2 * m["take"]) / 1000 for name, m in mean.items()}
    push = {name: (2 * m["publish"] + m["take"]) / 1000 for name, m in mean.items()}
    base = "gateway transport"
    print(
        f"CPU of this process, uvloop; {args.rounds} rounds of {args.cycles} publishes "
        "(persistent, mandatory, confirmed) then as many basic.get + ack, the clients in turn"
    )
    print(f"{'client':<20}{'publish us':>11}{'take us':>9}{'pull rt ms':>12}{'push rt ms':>12}")
    for name, m in mean.items():
        print(
            f"{name:<20}{m['publish']:>11.1f}{m['take']:>9.1f}"
            f"{pull[name]:>12.3f}{push[name]:>12.3f}"
            f"   ({pull[name] / pull[base]:.0%} of the gateway's)"
        )
    print(
        "a minimal client would save "
        f"{pull[base] - pull['minimal']:.2f} ms per pull round trip, "
        f"{push[base] - push['minimal']:.2f} ms per push round trip"
    )
    finish(
        args,
        {
            "benchmark": "amqp_client",
            "cpu_us": mean,
            "cpu_ms_per_round_trip": {"pull": pull, "push": push},
            "rounds": cpu,
        },
    )


if __name__ == "__main__":
    main()
