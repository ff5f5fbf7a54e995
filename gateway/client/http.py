"""The HTTP transport of :class:`gateway.client.participant.ParticipantClient`: POST to /ws.

On aiohttp rather than httpx: a participant makes six POSTs per round trip, and
httpx's connection pool spends about ten times aiohttp's CPU on each (1.5 ms against
0.15 ms on the benchmark machine), which made the signing clients as costly as the
gateway itself.
"""

from __future__ import annotations

import ssl
from pathlib import Path
from types import TracebackType
from typing import Self

import aiohttp

from gateway import request_id

_HEADERS = {"Content-Type": "text/xml; charset=utf-8"}


class GatewayUnreachable(ConnectionError):
    """A POST got no HTTP answer: refused, reset, or timed out. Safe to resend the
    same signed bytes: the bus deduplicates by MessageID."""


class SoapHttp:
    """A :data:`~gateway.client.participant.Call` that POSTs SOAP 1.1 to ``url``.

    Keeps connections alive between calls (at most ``max_connections`` at once)
    unless ``keep_alive`` is off: then each call opens its own, which lets a layer-4
    balancer spread calls over gateway processes. A call that gets no answer within
    ``timeout`` seconds raises :class:`GatewayUnreachable`. ``tls`` is the TLS context
    of an ``https`` URL (:func:`tls_context`: the CA to trust, the participant's client
    certificate); None: the system's CAs, no client certificate. The request id bound
    when a call is made (:mod:`gateway.request_id`) goes with it as ``X-Request-ID``.
    Use as an async context manager, or ``close()``.
    """

    def __init__(
        self,
        url: str,
        *,
        timeout: float = 60.0,
        max_connections: int = 100,
        keep_alive: bool = True,
        tls: ssl.SSLContext | None = None,
    ) -> None:
        self.url = url
        self._ssl: ssl.SSLContext | bool = True if tls is None else tls
        self._timeout = aiohttp.ClientTimeout(total=timeout)
        self._max_connections = max_connections
        self._keep_alive = keep_alive
        self._session: aiohttp.ClientSession | None = None

    async def __call__(self, soap: bytes) -> tuple[int, bytes]:
        if self._session is None:  # made here: a session belongs to the running loop
            self._session = aiohttp.ClientSession(
                timeout=self._timeout,
                connector=aiohttp.TCPConnector(
                    limit=self._max_connections, force_close=not self._keep_alive, ssl=self._ssl
                ),
            )
        traced = request_id.current()
        headers = _HEADERS if traced is None else {**_HEADERS, request_id.HTTP_HEADER: traced}
        try:
            async with self._session.post(self.url, data=soap, headers=headers) as response:
                request_id.note_answer(response.headers.get(request_id.HTTP_HEADER))
                return response.status, await response.read()
        except (aiohttp.ClientError, TimeoutError) as exc:
            detail = str(exc) or type(exc).__name__
            raise GatewayUnreachable(f"POST {self.url} got no answer: {detail}") from exc

    async def close(self) -> None:
        if self._session is not None:
            await self._session.close()
            self._session = None

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.close()


def tls_context(
    *, ca_file: Path | None = None, cert_file: Path | None = None, key_file: Path | None = None
) -> ssl.SSLContext:
    """A client TLS context: trusting ``ca_file`` (None: the system's CAs), presenting
    ``cert_file``/``key_file`` as the participant's TLS client certificate if given."""
    context = ssl.create_default_context(cafile=None if ca_file is None else str(ca_file))
    if cert_file is not None:
        context.load_cert_chain(cert_file, key_file)
    return context
