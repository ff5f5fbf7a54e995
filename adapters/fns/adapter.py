"""The FNS adapter: bus INN requests answered from the tax service's XML over HTTP.

Written only with the kit (:mod:`adapters.sdk`): one handler for
``urn://smevbus/types/fns/inn/1.0``, one :class:`httpx.AsyncClient` per process posting
one native ``<InnQuery>`` to ``{base_url}/inn`` per request. The reply is read with the
bus's hardened parser and validated against the native XSD before it is mapped
(:mod:`.mapping`). All of it runs inside :func:`~adapters.sdk.native_calls.agency_call`:

* HTTP 5xx (``INTERNAL``, ``UNAVAILABLE``), timeouts, refused connections ->
  :class:`AgencyUnavailable` (the kit retries, then rejects ``AGENCY_UNAVAILABLE``);
* HTTP 4xx (``BAD_QUERY``), a reply that is not well-formed, not valid against the
  native XSD, or for another query -> :class:`AgencyError` (``FAILURE``);
* ``<NotFound/>`` -> ``Reject(NO_DATA)``.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Final

import httpx
from lxml import etree

from adapters.fns import mapping
from adapters.fns.native import CONTENT_TYPE, FaultCode, native_schema, q, to_bytes
from adapters.sdk import (
    AgencyError,
    AgencyUnavailable,
    Answer,
    Handler,
    Reject,
    RequestContext,
    agency_call,
)
from gateway.core.envelope import RejectionCode
from gateway.core.errors import SmevbusError
from gateway.xml.parse import parse_secure
from gateway.xml.text import text_of

INN_PATH: Final = "/inn"
#: Native replies are a few hundred bytes; anything larger is not an FNS reply.
MAX_REPLY_BYTES: Final = 64 * 1024
DEFAULT_TIMEOUT: Final = httpx.Timeout(10.0, connect=3.0)
DEFAULT_LIMITS: Final = httpx.Limits(max_connections=50, max_keepalive_connections=20)
OPERATION: Final = "InnQuery"


class FnsAdapter:
    """The kit's :class:`~adapters.sdk.adapter.Adapter` for the FNS INN service."""

    name = "fns"

    def __init__(self, http: httpx.AsyncClient) -> None:
        self.http = http
        """The one client for this process; its ``base_url`` is the service's root."""

    def handlers(self) -> Mapping[str, Handler]:
        return {mapping.INN: self.inn}

    async def aclose(self) -> None:
        """Close the HTTP client (its connection pool)."""
        await self.http.aclose()

    async def inn(self, request: etree._Element, context: RequestContext) -> Answer:
        try:
            query = mapping.query(request, query_id=str(context.message_id))
        except mapping.BadRequest as exc:
            return Reject(RejectionCode.INVALID_REQUEST, str(exc))
        with agency_call(OPERATION):
            sent = await self.http.post(
                INN_PATH, content=to_bytes(query), headers={"Content-Type": CONTENT_TYPE}
            )
            reply = _read_reply(sent)
            if reply.get("queryId") not in (None, query.get("queryId")):
                raise AgencyError(f"{OPERATION}: the reply is for query {reply.get('queryId')}")
            try:
                answer = mapping.response(reply)
            except mapping.MappingError as exc:
                raise AgencyError(f"{OPERATION}: unusable reply: {exc}") from exc
        if isinstance(answer, mapping.NoRecord):
            return Reject(RejectionCode.NO_DATA, answer.description)
        return answer


def _read_reply(response: httpx.Response) -> etree._Element:
    """The validated native ``<InnReply>``; faults raised as the kit's two kinds."""
    try:
        reply = parse_secure(response.content, max_bytes=MAX_REPLY_BYTES)
        if reply.tag == q("InnReply"):
            native_schema().validate(reply, "reply")
    except SmevbusError as exc:
        response.raise_for_status()  # a 5xx/4xx status says more than a broken body
        raise AgencyError(
            f"{OPERATION}: malformed reply (HTTP {response.status_code}): {exc.message}",
            status=response.status_code,
        ) from exc
    if reply.tag != q("InnReply"):
        response.raise_for_status()
        raise AgencyError(f"{OPERATION}: the agency answered <{reply.tag}>, not <InnReply>")
    fault = reply.find(q("Fault"))
    if fault is not None:
        code, text = fault.get("code", ""), text_of(fault).strip()
        message = f"{OPERATION}: HTTP {response.status_code} {code}: {text}"
        if response.status_code >= 500 or code != FaultCode.BAD_QUERY:
            raise AgencyUnavailable(message, status=response.status_code, fault=code)
        raise AgencyError(message, status=response.status_code, fault=code)
    response.raise_for_status()  # any other non-2xx without a <Fault>
    return reply


def build_fns_adapter(
    base_url: str,
    *,
    timeout: httpx.Timeout = DEFAULT_TIMEOUT,
    limits: httpx.Limits = DEFAULT_LIMITS,
    transport: httpx.AsyncBaseTransport | None = None,
) -> FnsAdapter:
    """The adapter with its one HTTP client for the service at ``base_url``.

    ``await adapter.aclose()`` when done. ``transport`` is for tests (e.g.
    ``httpx.ASGITransport`` around :func:`~adapters.fns.mock_service.create_mock_fns`).
    """
    http = httpx.AsyncClient(
        base_url=base_url.rstrip("/"),
        timeout=timeout,
        limits=limits,
        transport=transport,
        headers={"Accept": "application/xml"},
        follow_redirects=False,
    )
    return FnsAdapter(http)
