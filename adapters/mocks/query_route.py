"""The one POST route of an XML-over-HTTP mock agency, knobs included.

Every such mock takes one query element and answers one reply element; what happens
around the answer is the same for all: an ``outage`` answers "unavailable" with
``Retry-After``, ``latency_ms`` delays, ``error_rate`` answers "internal error", a body
too large or not a valid query is refused, ``malformed`` cuts the answer in half.
The agency supplies a :class:`NativeService`: its query, its answer, its faults.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from enum import Enum

from fastapi import FastAPI, Request, Response
from lxml import etree

from adapters.mocks.knobs import Knobs
from adapters.sdk.native_xml import CONTENT_TYPE, to_bytes
from gateway.core.errors import InvalidContent, SmevbusError
from gateway.xml.parse import parse_secure
from gateway.xml.schema import CompiledSchema

#: A query is a few hundred bytes; anything past this is refused as a bad query.
MAX_QUERY_BYTES = 64 * 1024
RETRY_AFTER_S = 30


class Refusal(Enum):
    """Why the mock does not answer the query."""

    UNAVAILABLE = "unavailable"  # outage (HTTP 503)
    INTERNAL = "internal"  # injected error (HTTP 500)
    BAD_QUERY = "bad_query"  # the query's fault (HTTP 400)


@dataclass(frozen=True)
class NativeService:
    """What one mock agency answers."""

    #: Clark name of the query element it takes.
    query: str
    schema: Callable[[], CompiledSchema]
    #: The reply to a valid query, answered at the given time.
    answer: Callable[[etree._Element, datetime], etree._Element]
    #: The reply refusing a query (message given, answered at the given time) and its
    #: HTTP status.
    refuse: Callable[[Refusal, str, datetime], tuple[etree._Element, int]]
    #: The messages of an outage and of an injected error, as the agency words them.
    unavailable_message: str
    internal_message: str


def read_query(service: NativeService, body: bytes) -> etree._Element:
    """The validated query, or SmevbusError (InvalidContent / SchemaViolation / ...)."""
    root = parse_secure(body, max_bytes=MAX_QUERY_BYTES)
    if root.tag != service.query:
        raise InvalidContent(f"expected <{service.query}>, got <{root.tag}>")
    service.schema().validate(root, "query")
    return root


def add_query_route(app: FastAPI, path: str, knobs: Knobs, service: NativeService) -> None:
    """``POST path`` on ``app``: one query in, one reply out, as the knobs say."""
    service.schema()  # compile at start-up, not on the first query

    def refused(why: Refusal, message: str, **headers: str) -> Response:
        reply, status = service.refuse(why, message, datetime.now(UTC))
        return Response(to_bytes(reply), status, headers=headers, media_type=CONTENT_TYPE)

    @app.post(path)
    async def query(request: Request) -> Response:
        knobs.queries += 1
        config = knobs.config
        fail = knobs.draw_error()
        if config.outage:
            retry_after = {"Retry-After": str(RETRY_AFTER_S)}
            return refused(Refusal.UNAVAILABLE, service.unavailable_message, **retry_after)
        if config.latency_ms:
            await asyncio.sleep(config.latency_ms / 1000)
        if fail:
            return refused(Refusal.INTERNAL, service.internal_message)
        declared = request.headers.get("content-length", "0")
        if declared.isdigit() and int(declared) > MAX_QUERY_BYTES:
            return refused(Refusal.BAD_QUERY, f"query is larger than {MAX_QUERY_BYTES} bytes")
        try:
            parsed = read_query(service, await request.body())
        except SmevbusError as exc:
            return refused(Refusal.BAD_QUERY, f"{exc.code}: {exc.message}")
        answer = to_bytes(service.answer(parsed, datetime.now(UTC)))
        if config.malformed:
            answer = answer[: len(answer) // 2]
        return Response(answer, media_type=CONTENT_TYPE)
