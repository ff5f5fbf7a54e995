"""The I/O of one round trip at its floor (for ``floor.py``): raw clients, no gateway.

* RabbitMQ: raw aio-pika on a fresh vhost, CPU of this process per confirmed persistent
  publish to a durable quorum queue (``mandatory``, the gateway's bodies and headers),
  and per ``basic.get`` + ack, each at the gateway's concurrency;
* PostgreSQL: the statements the journal sent in ``floor_census``, with their arguments,
  sent again by raw asyncpg on one connection (prepared once, from asyncpg's statement
  cache) to a fresh database migrated as the gateway migrates its own: CPU of this
  process per round trip;
* HTTP: a bare ASGI app (reads the body, returns a fixed one) on uvicorn with
  ``http="httptools"``, ``loop="uvloop"`` as ``smevbus serve`` runs it, in a process
  of its own, POSTed to by the gateway's own client (:class:`gateway.client.http.SoapHttp`,
  aiohttp) at the gateway's concurrency: that process's CPU per POST.

Run as a script, it is that bare server: ``floor_io.py PORT REPLY_BYTES``.
"""

from __future__ import annotations

import asyncio
import itertools
import socket
import subprocess
import sys
import time
import uuid
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import aio_pika
import asyncpg

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from benchmarks.floor_census import is_control  # noqa: E402
from benchmarks.harness import cpu_seconds, drive  # noqa: E402
from gateway.client.http import SoapHttp  # noqa: E402
from gateway.store.pg import PgDatabase  # noqa: E402
from gateway.testing.processes import free_port, isolated_vhost  # noqa: E402
from gateway.transport.base import Message  # noqa: E402


def _cycle(items: list[Any]) -> Callable[[], Any]:
    it = itertools.cycle(items)
    return lambda: next(it)


# --- RabbitMQ --------------------------------------------------------------------------


async def _amqp(
    url: str, published: list[Message], n: int, concurrency: int
) -> tuple[float, float]:
    connection = await aio_pika.connect_robust(url)
    async with connection:
        channel = await connection.channel(publisher_confirms=True)
        queue = await channel.declare_queue(
            f"floor.{uuid.uuid4().hex[:8]}", durable=True, arguments={"x-queue-type": "quorum"}
        )
        message = _cycle(published)

        async def publish() -> None:
            sent = message()
            await channel.default_exchange.publish(
                aio_pika.Message(
                    sent.body,
                    message_id=sent.message_id,
                    headers=dict(sent.headers),
                    delivery_mode=aio_pika.DeliveryMode.PERSISTENT,
                ),
                routing_key=queue.name,
                mandatory=True,
            )

        async def get_and_ack() -> None:
            incoming = await queue.get(no_ack=False, fail=False)
            assert incoming is not None, "the queue ran dry"
            await incoming.ack()

        warm = min(200, n)
        published_row = await drive("publish", n, concurrency, publish, warmup=warm)
        got_row = await drive("get+ack", n, concurrency, get_and_ack, warmup=warm)
        await queue.delete(if_unused=False, if_empty=False)
    return published_row.per_call_ms(published_row.cpu_s), got_row.per_call_ms(got_row.cpu_s)


def amqp_floor(url: str, published: list[Message], n: int, concurrency: int) -> tuple[float, float]:
    """ms of this process's CPU per confirmed publish and per get + ack."""
    with isolated_vhost(url) as vhost:
        return asyncio.run(_amqp(vhost, published, n, concurrency))


# --- PostgreSQL -------------------------------------------------------------------------

Statements = list[tuple[str, tuple[Any, ...]]]


async def replay(database_url: str, round_trips: list[Statements]) -> tuple[float, int]:
    """Send each round trip's statements again, in order, on one raw asyncpg connection
    to the fresh (migrated) database ``database_url``: (CPU seconds, statements that
    failed as they may have in the gateway, e.g. a conflict it expected)."""
    database = PgDatabase(database_url)
    await database.migrate()
    await database.close()
    connection = await asyncpg.connect(database_url)
    failed = 0
    try:
        began = time.process_time()
        for statements in round_trips:
            for sql, args in statements:
                try:
                    if args or not is_control(sql):
                        await connection.fetch(sql, *args)
                    else:
                        await connection.execute(sql)
                except asyncpg.PostgresError:
                    failed += 1
        cpu = time.process_time() - began
    finally:
        await connection.close()
    return cpu, failed


# --- HTTP -------------------------------------------------------------------------------


def bare_app(reply: bytes) -> Callable[..., Awaitable[None]]:
    """An ASGI app that reads the request body and answers ``reply``."""
    headers = [
        (b"content-type", b"text/xml; charset=utf-8"),
        (b"content-length", str(len(reply)).encode()),
    ]

    async def app(scope: dict[str, Any], receive: Any, send: Any) -> None:
        assert scope["type"] == "http"
        while (await receive()).get("more_body", False):
            pass
        await send({"type": "http.response.start", "status": 200, "headers": headers})
        await send({"type": "http.response.body", "body": reply})

    return app


def _wait_listening(port: int, process: subprocess.Popen[bytes], within: float = 30.0) -> None:
    deadline = time.monotonic() + within
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"the bare server exited with {process.returncode}")
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.5):
                return
        except OSError:
            time.sleep(0.05)
    raise RuntimeError(f"the bare server did not listen on {port} within {within} s")


async def _post_all(url: str, bodies: list[bytes], n: int, concurrency: int, pid: int) -> float:
    call = SoapHttp(url, max_connections=64)
    body = _cycle(bodies)

    async def post() -> None:
        status, _reply = await call(body())
        assert status == 200

    try:
        for _ in range(min(200, n)):  # connections open, both sides warm
            await post()
        before = cpu_seconds(pid)
        row = await drive("POST", n, concurrency, post)
        return row.per_call_ms(cpu_seconds(pid) - before)
    finally:
        await call.close()


def http_floor(bodies: list[bytes], reply_bytes: int, n: int, concurrency: int) -> float:
    """ms of the server process's CPU per POST of ``bodies`` (in turn)."""
    port = free_port()
    server = subprocess.Popen(
        [sys.executable, str(Path(__file__).resolve()), str(port), str(reply_bytes)]
    )
    try:
        _wait_listening(port, server)
        return asyncio.run(
            _post_all(f"http://127.0.0.1:{port}/ws", bodies, n, concurrency, server.pid)
        )
    finally:
        server.terminate()
        server.wait(timeout=30)


def _serve(port: int, reply_bytes: int) -> None:
    import uvicorn

    reply = b"<r>" + b"x" * max(0, reply_bytes - 7) + b"</r>"
    uvicorn.run(
        bare_app(reply),
        host="127.0.0.1",
        port=port,
        http="httptools",
        loop="uvloop",
        lifespan="off",
        log_level="warning",
        log_config=None,
    )


if __name__ == "__main__":
    _serve(int(sys.argv[1]), int(sys.argv[2]))
