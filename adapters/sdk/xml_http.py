"""Agencies that speak XML over HTTP: POST one query element, read one reply element.

What the FNS and MVD adapters share: one :class:`AgencyHttp` per process (aiohttp, as
the adapters' client of the bus: httpx's ``AsyncClient`` cost four times its CPU per
POST here, 430-530 against 100-115 us), and :meth:`XmlOverHttp.post`, which sends a
native query and hands back the reply only once it is trusted: read with the bus's
hardened parser, valid against the agency's XSD, no error in it, for the query that
was sent. Every failure comes out as one of the kit's two kinds (inside
:func:`~adapters.sdk.native_calls.agency_call`):

* HTTP 5xx, an error code the agency uses for "try again", timeouts, refused
  connections -> :class:`~adapters.sdk.adapter.AgencyUnavailable` (retried);
* HTTP 4xx, any other error code, a reply that is not well-formed, not valid, of the
  wrong kind or for another query -> :class:`~adapters.sdk.adapter.AgencyError`.

What differs between agencies is a :class:`NativeReplies`.
"""

from __future__ import annotations

import functools
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass
from typing import Final
from urllib.parse import urlsplit

import aiohttp
from lxml import etree

from adapters.sdk.adapter import AgencyError, AgencyUnavailable
from adapters.sdk.native_calls import agency_call, status_error
from adapters.sdk.native_xml import CONTENT_TYPE, to_bytes
from gateway.core.errors import SmevbusError
from gateway.xml.parse import parse_secure
from gateway.xml.schema import CompiledSchema
from gateway.xml.text import text_of

#: Seconds to connect, and then to wait for each read of an answer.
DEFAULT_TIMEOUT: Final = aiohttp.ClientTimeout(total=None, sock_connect=3.0, sock_read=10.0)
#: Connections kept to one agency (the runner's workers share them).
DEFAULT_LIMIT: Final = 50


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


class AgencySession:
    """The aiohttp session of an adapter's calls to its agency, opened on first use
    (inside the adapter's event loop) and again after :meth:`aclose`: no cookies, at
    most ``limit`` connections, ``timeout`` for each call."""

    def __init__(
        self, timeout: aiohttp.ClientTimeout, limit: int, headers: dict[str, str] | None = None
    ) -> None:
        self.timeout = timeout
        self.limit = limit
        self.headers = headers
        self._session: aiohttp.ClientSession | None = None

    def get(self) -> aiohttp.ClientSession:
        session = self._session
        if session is None or session.closed:
            session = self._session = aiohttp.ClientSession(
                timeout=self.timeout,
                connector=aiohttp.TCPConnector(limit=self.limit),
                cookie_jar=aiohttp.DummyCookieJar(),
                headers=self.headers,
            )
        return session

    async def aclose(self) -> None:
        """Close the connections (a later :meth:`get` opens new ones)."""
        if self._session is not None:
            await self._session.close()
            self._session = None


class AgencyHttp:
    """POSTs to one agency at ``base_url`` over one :class:`AgencySession`. Redirects
    are not followed: a 3xx is the agency's error, as any other status it should not
    send. The proxy is the environment's for ``base_url`` (:func:`env_proxy`); TLS is
    checked against the system's trust store."""

    def __init__(
        self,
        base_url: str,
        *,
        timeout: aiohttp.ClientTimeout = DEFAULT_TIMEOUT,
        limit: int = DEFAULT_LIMIT,
    ) -> None:
        self.base_url = base_url.rstrip("/")
        self.session = AgencySession(timeout, limit, {"Accept": "application/xml"})

    async def post(
        self, path: str, body: bytes, content_type: str, *, max_bytes: int
    ) -> tuple[int, bytes]:
        """The status and the body of the answer to ``body`` POSTed at ``path``: the
        whole body, or its first ``max_bytes + 1`` bytes when it is longer (read no
        further, so an endless answer costs no more memory than that)."""
        async with self.session.get().post(
            self.base_url + path,
            data=body,
            headers={"Content-Type": content_type},
            allow_redirects=False,
            proxy=env_proxy(self.base_url),
        ) as response:
            chunks: list[bytes] = []
            size = 0
            async for chunk in response.content.iter_any():
                chunks.append(chunk)
                size += len(chunk)
                if size > max_bytes:
                    break  # the connection is closed, not reused, on the way out
            return response.status, b"".join(chunks)

    async def aclose(self) -> None:
        await self.session.aclose()


@functools.lru_cache(maxsize=64)
def env_proxy(url: str) -> str | None:
    """The proxy the environment names for ``url`` (``HTTP_PROXY``, ``HTTPS_PROXY``,
    ``NO_PROXY``, as httpx honoured them), read once per URL: aiohttp's ``trust_env``
    reads the environment again on every request (about 0.3 ms of CPU each here)."""
    parts = urlsplit(url)
    if parts.hostname is None or urllib.request.proxy_bypass(parts.hostname):
        return None
    return urllib.request.getproxies().get(parts.scheme)


class XmlOverHttp:
    """Queries to one agency over ``http`` (whose ``base_url`` is the agency's root)."""

    def __init__(self, http: AgencyHttp, replies: NativeReplies) -> None:
        self.http = http
        self.replies = replies

    async def post(self, operation: str, path: str, query: etree._Element) -> etree._Element:
        """POST ``query`` to ``path``; the trusted reply, or the kit's errors."""
        with agency_call(operation):
            status, body = await self.http.post(
                path, to_bytes(query), CONTENT_TYPE, max_bytes=self.replies.max_bytes
            )
            reply = self._read(operation, status, body)
        sent, echoed = query.get("queryId"), reply.get("queryId")
        if sent is not None and echoed is not None and sent != echoed:
            raise AgencyError(f"{operation}: the agency answered query {echoed}, not {sent}")
        return reply

    def _read(self, operation: str, status: int, body: bytes) -> etree._Element:
        kind = self.replies
        try:
            reply = parse_secure(body, max_bytes=kind.max_bytes)
            if reply.tag == kind.root:
                kind.schema().validate(reply, kind.what)
        except SmevbusError as exc:
            if status >= 400:
                raise status_error(operation, status) from exc  # it says more than the body
            raise AgencyError(
                f"{operation}: malformed {kind.what} from the agency (HTTP {status}): "
                f"{exc.message}",
                status=status,
            ) from exc
        if reply.tag != kind.root:
            if status >= 300:
                raise status_error(operation, status)
            raise AgencyError(f"{operation}: the agency answered <{reply.tag}>, not <{kind.root}>")
        error = reply.find(kind.error)
        if error is not None:
            code, text = error.get("code", ""), text_of(error).strip()
            message = f"{operation}: the agency answered HTTP {status} {code}: {text}"
            if status >= 500 or code in kind.unavailable_codes:
                raise AgencyUnavailable(message, status=status, error_code=code)
            raise AgencyError(message, status=status, error_code=code)
        if status >= 300:  # any other non-2xx without an error element
            raise status_error(operation, status)
        return reply
