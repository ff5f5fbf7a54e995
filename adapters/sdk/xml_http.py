"""Agencies that speak XML over HTTP: POST one query element, read one reply element.

What the FNS and MVD adapters share: one :class:`httpx.AsyncClient` per process
(:func:`agency_client`), and :meth:`XmlOverHttp.post`, which sends a native query and
hands back the reply only once it is trusted: read with the bus's hardened parser,
valid against the agency's XSD, no error in it, for the query that was sent. Every
failure comes out as one of the kit's two kinds (inside
:func:`~adapters.sdk.native_calls.agency_call`):

* HTTP 5xx, an error code the agency uses for "try again", timeouts, refused
  connections -> :class:`~adapters.sdk.adapter.AgencyUnavailable` (retried);
* HTTP 4xx, any other error code, a reply that is not well-formed, not valid, of the
  wrong kind or for another query -> :class:`~adapters.sdk.adapter.AgencyError`.

What differs between agencies is a :class:`NativeReplies`.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Final

import httpx
from lxml import etree

from adapters.sdk.adapter import AgencyError, AgencyUnavailable
from adapters.sdk.native_calls import agency_call
from adapters.sdk.native_xml import CONTENT_TYPE, to_bytes
from gateway.core.errors import SmevbusError
from gateway.xml.parse import parse_secure
from gateway.xml.schema import CompiledSchema
from gateway.xml.text import text_of

DEFAULT_TIMEOUT: Final = httpx.Timeout(10.0, connect=3.0)
DEFAULT_LIMITS: Final = httpx.Limits(max_connections=50, max_keepalive_connections=20)


@dataclass(frozen=True)
class NativeReplies:
    """How one agency's replies look."""

    #: Clark name of the reply's root element (``{urn:...}InnReply``).
    root: str
    #: Clark name of the child that reports an error, with a ``code`` attribute.
    error: str
    #: Error codes that mean "not now, try again" (the others blame the query).
    unavailable_codes: frozenset[str]
    #: The agency's compiled XSD; a reply is validated as ``what``.
    schema: Callable[[], CompiledSchema]
    #: Replies larger than this are not the agency's.
    max_bytes: int
    #: What the agency calls its reply, in messages ("reply", "answer").
    what: str = "reply"


def agency_client(
    base_url: str,
    *,
    timeout: httpx.Timeout = DEFAULT_TIMEOUT,
    limits: httpx.Limits = DEFAULT_LIMITS,
    transport: httpx.AsyncBaseTransport | None = None,
) -> httpx.AsyncClient:
    """The one HTTP client of an adapter process for the agency at ``base_url``.

    ``transport`` is for tests (e.g. ``httpx.ASGITransport`` around a mock agency).
    """
    return httpx.AsyncClient(
        base_url=base_url.rstrip("/"),
        timeout=timeout,
        limits=limits,
        transport=transport,
        headers={"Accept": "application/xml"},
        follow_redirects=False,
    )


class XmlOverHttp:
    """Queries to one agency over ``http`` (whose ``base_url`` is the agency's root)."""

    def __init__(self, http: httpx.AsyncClient, replies: NativeReplies) -> None:
        self.http = http
        self.replies = replies

    async def post(self, operation: str, path: str, query: etree._Element) -> etree._Element:
        """POST ``query`` to ``path``; the trusted reply, or the kit's errors."""
        with agency_call(operation):
            response = await self.http.post(
                path, content=to_bytes(query), headers={"Content-Type": CONTENT_TYPE}
            )
            reply = self._read(operation, response)
        sent, echoed = query.get("queryId"), reply.get("queryId")
        if sent is not None and echoed is not None and sent != echoed:
            raise AgencyError(f"{operation}: the agency answered query {echoed}, not {sent}")
        return reply

    def _read(self, operation: str, response: httpx.Response) -> etree._Element:
        kind = self.replies
        status = response.status_code
        try:
            reply = parse_secure(response.content, max_bytes=kind.max_bytes)
            if reply.tag == kind.root:
                kind.schema().validate(reply, kind.what)
        except SmevbusError as exc:
            if status >= 400:
                response.raise_for_status()  # the status says more than the body
            raise AgencyError(
                f"{operation}: malformed {kind.what} from the agency (HTTP {status}): "
                f"{exc.message}",
                status=status,
            ) from exc
        if reply.tag != kind.root:
            response.raise_for_status()
            raise AgencyError(f"{operation}: the agency answered <{reply.tag}>, not <{kind.root}>")
        error = reply.find(kind.error)
        if error is not None:
            code, text = error.get("code", ""), text_of(error).strip()
            message = f"{operation}: the agency answered HTTP {status} {code}: {text}"
            if status >= 500 or code in kind.unavailable_codes:
                raise AgencyUnavailable(message, status=status, error_code=code)
            raise AgencyError(message, status=status, error_code=code)
        response.raise_for_status()  # any other non-2xx without an error element
        return reply
