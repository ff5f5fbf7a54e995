"""What the gateway does in one round trip, counted in this process (for ``floor.py``).

The whole bus in one process (:func:`gateway.testing.bus.open_bus`: the router, the
memory transport, the dev PKI) with its journal on PostgreSQL, driven one round trip
at a time as ``router.py`` drives ``smevbus serve``: pull (SendRequest, GetRequest,
SendResponse, Ack, GetResponse, Ack) and push (the provider consumes its queue as
:class:`adapters.sdk.push.PushSource` does; the gateway serves SendRequest,
SendResponse, GetResponse, Ack).

:func:`census` records, inside ``Router.handle`` only (the clients' own signing,
parsing and checking are theirs, not the gateway's), every call of the XML and crypto
primitives with its arguments (so ``floor.py`` can time the very same calls on the very
same documents), every publish, get and ack of the transport with what was published,
and every SQL statement with its arguments. :func:`store_overhead` compares the
journal's own layer with raw asyncpg, statement by statement.
"""

from __future__ import annotations

import asyncio
import functools
import sys
import time
import uuid
from collections import Counter
from collections.abc import AsyncIterator, Callable, Iterator
from contextlib import asynccontextmanager, contextmanager
from contextvars import ContextVar
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import asyncpg
from lxml import etree

from adapters.sdk.push import PushSource
from gateway.core.envelope import MessageKind
from gateway.core.lifecycle import MessageState
from gateway.crypto import envelope
from gateway.router import intake
from gateway.router.router import Router
from gateway.store import open_stores
from gateway.store.journal import Journal
from gateway.store.records import NewMessage
from gateway.testing.bus import Bus, birth_request, birth_response, open_bus, round_trip
from gateway.transport.base import Message
from gateway.transport.memory import MemoryTransport, _MemoryDelivery
from gateway.xml import parse, soap
from gateway.xml.schema import CompiledSchema, bus_schema

#: The primitives of the floor, by the name ``floor.py`` reports them under.
FLOOR_PRIMITIVES = ("parse_secure", "xsd_bus", "xsd_content", "verify", "sign", "serialize")
#: Other XML work the gateway does per call, measured but not in the floor.
OTHER_PRIMITIVES = ("parse_own", "content_digest", "replay_digest")

#: Module-level functions, by the name they are counted under.
_FUNCTIONS: dict[str, Callable[..., Any]] = {
    "parse_secure": parse.parse_secure,
    "parse_own": parse.parse_own,
    "verify": envelope.verify_element,
    "sign": envelope.sign_element,
    "serialize": soap.wrap_envelope,
    "content_digest": intake.content_digest,
    "replay_digest": envelope.signed_bytes,
}
#: Round trips of each mode before the journal is timed.
WARMUP = 20
_CONTROL = ("BEGIN", "COMMIT", "ROLLBACK", "SAVEPOINT", "RELEASE")


@dataclass
class Primitive:
    """One call the gateway made: ``fn(*args, **kwargs)`` again times it on the same tree."""

    name: str
    fn: Callable[..., Any]
    args: tuple[Any, ...]
    kwargs: dict[str, Any]

    def __call__(self) -> object:
        return self.fn(*self.args, **self.kwargs)


@dataclass
class Call:
    """One SOAP call the gateway served, and what it did for it."""

    request: bytes
    operation: str = "?"
    reply: bytes = b""
    primitives: list[Primitive] = field(default_factory=list)
    transport: Counter[str] = field(default_factory=Counter)
    published: list[Message] = field(default_factory=list)
    #: (SQL, arguments) of every statement, transaction control included, in order.
    statements: list[tuple[str, tuple[Any, ...]]] = field(default_factory=list)


@dataclass
class RoundTrip:
    mode: str
    calls: list[Call]

    def count(self, name: str) -> int:
        return sum(p.name == name for call in self.calls for p in call.primitives)

    def transport(self, name: str) -> int:
        return sum(call.transport[name] for call in self.calls)

    @property
    def statements(self) -> list[tuple[str, tuple[Any, ...]]]:
        return [statement for call in self.calls for statement in call.statements]

    @property
    def sql_statements(self) -> int:
        """Statements other than transaction control (as ``sqlcount.py`` counts them)."""
        return sum(not is_control(sql) for sql, _ in self.statements)


def is_control(sql: str) -> bool:
    return sql.split(None, 1)[0].strip(";").upper() in _CONTROL


_CURRENT: ContextVar[Call | None] = ContextVar("floor_census_call", default=None)


def _recorder(name: str, fn: Callable[..., Any]) -> Callable[..., Any]:
    @functools.wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        call = _CURRENT.get()
        if call is not None:
            call.primitives.append(Primitive(name, fn, args, kwargs))
        return fn(*args, **kwargs)

    return wrapper


def _schema_recorder(fn: Callable[..., Any]) -> Callable[..., Any]:
    @functools.wraps(fn)
    def validate(self: CompiledSchema, element: Any, what: str) -> None:
        call = _CURRENT.get()
        if call is not None:
            name = "xsd_bus" if self is bus_schema() else "xsd_content"
            call.primitives.append(Primitive(name, fn, (self, element, what), {}))
        return fn(self, element, what)  # type: ignore[no-any-return]

    return validate


def _counter(name: str, fn: Callable[..., Any]) -> Callable[..., Any]:
    @functools.wraps(fn)
    async def wrapper(*args: Any, **kwargs: Any) -> Any:
        call = _CURRENT.get()
        result = await fn(*args, **kwargs)
        if call is not None:
            if name == "publish":
                call.published.append(args[3])
            if name != "get" or result is not None:
                call.transport[name] += 1
        return result

    return wrapper


@contextmanager
def _instrumented(calls: list[Call]) -> Iterator[None]:
    """Count and record what ``Router.handle`` does; everything restored on exit."""
    undo: list[tuple[object, str, object]] = []

    def patch(owner: object, attr: str, value: object) -> None:
        undo.append((owner, attr, getattr(owner, attr)))
        setattr(owner, attr, value)

    # Every gateway module that imported one of the functions by name.
    for module in [m for name, m in sys.modules.items() if name.startswith("gateway.")]:
        for attr, value in list(vars(module).items()):
            for name, fn in _FUNCTIONS.items():
                if value is fn:
                    patch(module, attr, _recorder(name, fn))
    patch(CompiledSchema, "validate", _schema_recorder(CompiledSchema.validate))
    patch(MemoryTransport, "publish", _counter("publish", MemoryTransport.publish))
    patch(MemoryTransport, "get", _counter("get", MemoryTransport.get))
    patch(_MemoryDelivery, "_ack", _counter("ack", _MemoryDelivery._ack))
    handle = Router.handle

    async def recorded(self: Router, raw: bytes, **kwargs: Any) -> tuple[int, bytes]:
        call = Call(raw)
        token = _CURRENT.set(call)
        try:
            status, reply = await handle(self, raw, **kwargs)
        finally:
            _CURRENT.reset(token)
        call.reply = reply
        call.operation = soap.unwrap_envelope(parse.parse_secure(raw))[0]
        calls.append(call)
        return status, reply

    patch(Router, "handle", recorded)
    try:
        yield
    finally:
        for owner, attr, value in reversed(undo):
            setattr(owner, attr, value)


def _labelled(calls: list[Call]) -> list[Call]:
    """The provider's Ack and the consumer's told apart (the first follows SendResponse)."""
    for before, call in zip([None, *calls], calls, strict=False):
        if call.operation == "Ack":
            provider = before is not None and before.operation == "SendResponse"
            call.operation = "Ack (provider)" if provider else "Ack (consumer)"
    return calls


async def _push_round_trip(bus: Bus, source: PushSource) -> None:
    """As ``router.py``'s ``pushed_provider``: the request taken from the queue by push,
    answered by SendResponse, its delivery acked; the consumer pulls the answer."""
    sent = await bus.portal.send_request(birth_request())
    inbound = await source.next()
    assert inbound is not None, "the request was not pushed to ZAGS"
    await bus.zags.send_response(inbound.delivery.reply_to, content=birth_response())
    await inbound.ack()
    got = await bus.portal.get_response()
    assert got is not None, "the answer did not reach PORTAL"
    assert got.original_message_id == sent.message_id
    await bus.portal.ack(got.metadata.message_id)


@asynccontextmanager
async def _bus_on(
    database_url: str, log: Callable[[Any], None] | None = None
) -> AsyncIterator[Bus]:
    stores = open_stores(database_url)
    if log is not None:
        database: Any = stores.database
        database.trace = lambda sql: None  # so the pool's connections get a query logger
        database._log = log  # ... which is this, with each statement's arguments
    bus = await open_bus(journal=stores.journal)
    try:
        yield bus
    finally:
        await bus.close()


async def _each_mode(bus: Bus, n: int, between: Callable[[str], None], *, warmup: int = 0) -> None:
    """``n`` pull round trips, then ``n`` push, each after ``warmup`` more (statements
    prepared, caches filled); ``between(mode)`` just before a mode's ``n`` round trips,
    ``between("")`` just after them."""
    for _ in range(warmup):
        await round_trip(bus)
    between("pull")
    for _ in range(n):
        await round_trip(bus)
    between("")
    source = PushSource(bus.transport, "ZAGS", bus.verifier, clock=bus.clock, wait=5.0)
    try:
        for _ in range(warmup):
            await _push_round_trip(bus, source)
        between("push")
        for _ in range(n):
            await _push_round_trip(bus, source)
        between("")
    finally:
        await source.close()


@dataclass
class Census:
    pull: list[RoundTrip]
    push: list[RoundTrip]
    #: Statements sent outside any SOAP call (expected: none).
    stray_statements: int


async def census(database_url: str, n: int) -> Census:
    """``n`` pull and ``n`` push round trips on a fresh database, each recorded."""
    calls: list[Call] = []
    stray: list[str] = []

    def log(query: Any) -> None:
        # Called soon after each statement, in a copy of the context it ran in.
        call = _CURRENT.get()
        if call is None:
            stray.append(query.query)
        else:
            call.statements.append((query.query, tuple(query.args)))

    spans: dict[str, list[int]] = {}  # mode: [first call, last call + 1]

    def between(mode: str) -> None:
        for span in spans.values():
            if len(span) == 1:
                span.append(len(calls))
        if mode:
            spans[mode] = [len(calls)]

    async with _bus_on(database_url, log) as bus:
        with _instrumented(calls):
            await _each_mode(bus, n, between)
    stray.clear()  # the ones before the first round trip are the bus's start
    per_trip = {"pull": 6, "push": 4}

    def trips(mode: str) -> list[RoundTrip]:
        start, end = spans[mode]
        mine = calls[start:end]
        size = per_trip[mode]
        assert len(mine) == n * size, f"{mode}: {len(mine)} SOAP calls for {n} round trips"
        return [RoundTrip(mode, _labelled(mine[i : i + size])) for i in range(0, len(mine), size)]

    return Census(trips("pull"), trips("push"), len(stray))


#: Statements of :func:`store_overhead` per lap (``accept``, then its QUEUED move).
_STORE_LAP = 2


async def store_overhead(database_url: str, n: int, rounds: int = 10) -> tuple[float, float]:
    """CPU µs per statement of accepts and QUEUED moves through ``PgJournal``, and of the
    very statements it sends, on one raw asyncpg connection (with new ids): ``n`` of
    each, in ``rounds`` alternating rounds (this host's speed drifts).

    One operation at a time and nothing else in the loop: CPU inside the journal's
    methods of a whole bus would count whatever else ran while they awaited. The
    statements are captured by a journal of their own: asyncpg's statement logging
    is not in the timed one."""
    xml = etree.tostring(birth_request()) * 4  # a stored envelope's size
    now = datetime.now(UTC)

    def message() -> NewMessage:
        return NewMessage(
            message_id=str(uuid.uuid1()),
            kind=MessageKind.REQUEST,
            sender="PORTAL",
            recipient="ZAGS",
            message_type="urn://x-artefacts-zags-rogdzags/root/112-51/4.0.1",
            content_sha256="0" * 64,
            xml=xml,
        )

    async def lap(journal: Journal, new: NewMessage) -> None:
        accepted = await journal.accept(new, at=now, actor="bus")
        await journal.transition(
            new.message_id,
            MessageState.QUEUED,
            at=now,
            actor="bus",
            expected_state=MessageState.ACCEPTED,
            expected_version=accepted.record.version,
        )

    sent: list[tuple[str, list[Any]]] = []
    traced = open_stores(database_url)
    traced.database.trace = lambda sql: None  # the pool's connections log their statements
    traced.database._log = lambda query: sent.append((query.query, list(query.args)))  # type: ignore[method-assign]
    await traced.migrate()
    await lap(traced.journal, message())
    await asyncio.sleep(0)  # asyncpg calls the statement loggers soon after, not at once
    await traced.close()
    if len(sent) != _STORE_LAP:
        raise RuntimeError(f"expected {_STORE_LAP} statements a lap, the journal sent {len(sent)}")

    stores = open_stores(database_url)
    connection = await asyncpg.connect(database_url)
    per_round = max(1, n // rounds)
    store_s = raw_s = 0.0
    try:
        for new in [message() for _ in range(WARMUP)]:
            await lap(stores.journal, new)
        for _ in range(rounds):
            messages = [message() for _ in range(per_round)]
            began = time.process_time()
            for new in messages:
                await lap(stores.journal, new)
            store_s += time.process_time() - began
            again = [_with_new_ids(sent) for _ in range(per_round)]
            began = time.process_time()
            for statements in again:
                for sql, args in statements:
                    await connection.fetch(sql, *args)
            raw_s += time.process_time() - began
    finally:
        await connection.close()
        await stores.close()
    per = 1e6 / (rounds * per_round * _STORE_LAP)
    return store_s * per, raw_s * per


def _with_new_ids(statements: list[tuple[str, list[Any]]]) -> list[tuple[str, list[Any]]]:
    """``statements`` with every message id replaced by a new one (the same throughout)."""
    fresh: dict[str, str] = {}
    return [
        (sql, [fresh.setdefault(a, str(uuid.uuid1())) if _is_id(a) else a for a in args])
        for sql, args in statements
    ]


def _is_id(value: object) -> bool:
    return isinstance(value, str) and len(value) == 36 and value.count("-") == 4
