"""SQL statements counted on the wire: a loopback proxy in front of PostgreSQL.

The gateway connects to PostgreSQL through :class:`StatementCounter`, which forwards
every byte and counts what the clients ask the server to run: each extended-protocol
``Execute`` message and each simple ``Query`` that is not transaction control
(``BEGIN``, ``COMMIT``, ``ROLLBACK``, ``SAVEPOINT``, ``RELEASE``). So the figure is
what reached the database, not what the code meant to send. The proxy runs in a
process of its own, so its CPU is in no measured figure; it adds one loopback hop
to every statement. It reads the protocol in the clear: PostgreSQL without SSL (the
SSLRequest a client tries first is refused and passed through).

With ``by_text=True`` the proxy also counts statements by their SQL text (per
connection it follows Parse: name -> text, and Bind: portal -> statement, so an
Execute of a cached prepared statement is still told by its text), and
:meth:`StatementCounter.by_text` reads those counts: where the statements go.
"""

from __future__ import annotations

import asyncio
import multiprocessing
import re
import struct
from collections import Counter
from multiprocessing.connection import Connection
from multiprocessing.sharedctypes import Synchronized
from types import TracebackType
from typing import Self
from urllib.parse import urlsplit, urlunsplit

#: Startup-phase request codes after which the client sends another untyped message.
_NEGOTIATION = {80877103, 80877104}  # SSLRequest, GSSENCRequest
_CONTROL = {b"BEGIN", b"COMMIT", b"ROLLBACK", b"SAVEPOINT", b"RELEASE", b"START", b"END"}


def _is_statement(kind: bytes, body: bytes) -> bool:
    """An Execute, or a simple Query that is not transaction control."""
    if kind == b"E":
        return True
    words = body.rstrip(b"\0").split(maxsplit=1)
    return kind == b"Q" and bool(words) and words[0].rstrip(b";").upper() not in _CONTROL


def _cstring(body: bytes, start: int = 0) -> tuple[bytes, int]:
    """The NUL-terminated string at ``start``, and where the next field begins."""
    end = body.index(b"\0", start)
    return body[start:end], end + 1


class _Texts:
    """One connection's prepared statements and portals, to tell an Execute by its SQL."""

    def __init__(self, counts: Counter[str]) -> None:
        self.counts = counts
        self.statements: dict[bytes, bytes] = {}
        self.portals: dict[bytes, bytes] = {}

    def see(self, kind: bytes, body: bytes) -> None:
        if kind == b"P":
            name, at = _cstring(body)
            self.statements[name] = _cstring(body, at)[0]
        elif kind == b"B":
            portal, at = _cstring(body)
            self.portals[portal] = self.statements.get(_cstring(body, at)[0], b"?")
        elif kind == b"E":
            self.counts[_text(self.portals.get(_cstring(body)[0], b"?"))] += 1
        elif kind == b"Q":
            self.counts[_text(body.rstrip(b"\0"))] += 1


def _text(sql: bytes) -> str:
    return re.sub(r"\s+", " ", sql.decode("utf-8", "replace")).strip()


async def _count(
    reader: asyncio.StreamReader,
    writer: asyncio.StreamWriter,
    counter: Synchronized[int],
    texts: _Texts | None,
) -> None:
    """Forward client -> server messages, counting the statements among them."""
    startup = True
    while True:
        if startup:
            head = await reader.readexactly(8)
            length, code = struct.unpack("!ii", head)
            writer.write(head + await reader.readexactly(length - 8))
            startup = code in _NEGOTIATION
            continue
        head = await reader.readexactly(5)
        body = await reader.readexactly(struct.unpack("!i", head[1:])[0] - 4)
        writer.write(head + body)
        if _is_statement(head[:1], body):
            with counter.get_lock():
                counter.value += 1
            if texts is not None:
                texts.see(head[:1], body)
        elif texts is not None and head[:1] in (b"P", b"B"):
            texts.see(head[:1], body)
        await writer.drain()


async def _pipe(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    while data := await reader.read(65536):
        writer.write(data)
        await writer.drain()


async def _proxy(
    upstream: tuple[str, int],
    counter: Synchronized[int],
    port: Synchronized[int],
    asks: Connection | None,
) -> None:
    counts: Counter[str] = Counter()
    if asks is not None:  # each message asks for the counts by text so far

        def answer() -> None:
            asks.recv()
            asks.send(dict(counts))

        asyncio.get_running_loop().add_reader(asks.fileno(), answer)

    async def serve(client_r: asyncio.StreamReader, client_w: asyncio.StreamWriter) -> None:
        server_r, server_w = await asyncio.open_connection(*upstream)
        texts = None if asks is None else _Texts(counts)
        # Either side closing ends the other (a client's Terminate waits for the close).
        directions = [
            asyncio.create_task(_count(client_r, server_w, counter, texts)),
            asyncio.create_task(_pipe(server_r, client_w)),
        ]
        await asyncio.wait(directions, return_when=asyncio.FIRST_COMPLETED)
        for direction in directions:
            direction.cancel()
        await asyncio.gather(*directions, return_exceptions=True)
        server_w.close()
        client_w.close()

    server = await asyncio.start_server(serve, "127.0.0.1", 0)
    port.value = server.sockets[0].getsockname()[1]
    await server.serve_forever()


def _run(
    upstream: tuple[str, int],
    counter: Synchronized[int],
    port: Synchronized[int],
    asks: Connection | None,
) -> None:
    asyncio.run(_proxy(upstream, counter, port, asks))


class StatementCounter:
    """``with StatementCounter(url) as counter:`` give the gateway ``counter.route(url)``
    and read ``counter.statements`` (with ``by_text``: :meth:`by_text`) before and after
    a phase."""

    def __init__(self, database_url: str, *, by_text: bool = False) -> None:
        parts = urlsplit(database_url)
        self._upstream = (parts.hostname or "127.0.0.1", parts.port or 5432)
        context = multiprocessing.get_context("spawn")
        self._counter: Synchronized[int] = context.Value("q", 0)  # type: ignore[assignment]
        self._port: Synchronized[int] = context.Value("i", 0)  # type: ignore[assignment]
        self._asks: Connection | None = None
        asks: Connection | None = None
        if by_text:
            self._asks, asks = context.Pipe()
        self._process = context.Process(
            target=_run, args=(self._upstream, self._counter, self._port, asks), daemon=True
        )

    def __enter__(self) -> Self:
        self._process.start()
        while self._port.value == 0:
            self._process.join(0.05)
            if not self._process.is_alive():
                raise RuntimeError("the statement counter did not start")
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self._process.terminate()
        self._process.join(5)

    @property
    def statements(self) -> int:
        """Statements the proxied connections have sent so far."""
        return int(self._counter.value)

    @property
    def counts_text(self) -> bool:
        """Whether :meth:`by_text` can be read."""
        return self._asks is not None

    def by_text(self) -> dict[str, int]:
        """Statements sent so far by SQL text (whitespace collapsed); needs ``by_text``."""
        if self._asks is None:
            raise RuntimeError("the counter was started without by_text")
        self._asks.send(None)
        counts: dict[str, int] = self._asks.recv()
        return counts

    def route(self, database_url: str) -> str:
        """``database_url`` (a database on the counted server) through the proxy."""
        parts = urlsplit(database_url)
        user = parts.netloc.rpartition("@")[0]
        netloc = f"{user}@127.0.0.1:{self._port.value}" if user else f"127.0.0.1:{self._port.value}"
        return urlunsplit(parts._replace(netloc=netloc))
