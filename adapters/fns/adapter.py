"""The FNS adapter: bus INN requests answered from the tax service's XML over HTTP.

Written only with the kit (:mod:`adapters.sdk`): one handler for
``urn://smevbus/types/fns/inn/1.0``, one :class:`~adapters.sdk.xml_http.AgencyHttp`
(aiohttp) per process posting one native ``<InnQuery>`` to ``{base_url}/inn`` per request
(:class:`~adapters.sdk.xml_http.XmlOverHttp`). The reply is read with the bus's
hardened parser and validated against the native XSD before it is mapped
(:mod:`.mapping`):

* HTTP 5xx (``INTERNAL``, ``UNAVAILABLE``), timeouts, refused connections ->
  :class:`AgencyUnavailable` (the kit retries, then rejects ``AGENCY_UNAVAILABLE``);
* HTTP 4xx (``BAD_QUERY``), a reply that is not well-formed, not valid against the
  native XSD, or for another query -> :class:`AgencyError` (``FAILURE``);
* ``<NotFound/>`` -> ``Reject(NO_DATA)``.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Final

import aiohttp
from lxml import etree

from adapters.fns import mapping
from adapters.fns.native import FaultCode, native_schema, q
from adapters.sdk import (
    AgencyError,
    Answer,
    Handler,
    Reject,
    RequestContext,
    agency_call,
)
from adapters.sdk.xml_http import (
    DEFAULT_LIMIT,
    DEFAULT_TIMEOUT,
    AgencyHttp,
    NativeReplies,
    XmlOverHttp,
)
from gateway.core.envelope import RejectionCode

INN_PATH: Final = "/inn"
OPERATION: Final = "InnQuery"
REPLIES: Final = NativeReplies(
    root=q("InnReply"),
    error=q("Fault"),
    unavailable_codes=frozenset({FaultCode.INTERNAL, FaultCode.UNAVAILABLE}),
    schema=native_schema,
    # Native replies are a few hundred bytes; anything larger is not an FNS reply.
    max_bytes=64 * 1024,
)


class FnsAdapter:
    """The kit's :class:`~adapters.sdk.adapter.Adapter` for the FNS INN service."""

    name = "fns"

    def __init__(self, http: AgencyHttp) -> None:
        self.http = http
        """The one client for this process; its ``base_url`` is the service's root."""
        self.agency = XmlOverHttp(http, REPLIES)

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
        reply = await self.agency.post(OPERATION, INN_PATH, query)
        with agency_call(OPERATION):
            try:
                answer = mapping.response(reply)
            except mapping.MappingError as exc:
                raise AgencyError(f"{OPERATION}: unusable reply: {exc}") from exc
        if isinstance(answer, mapping.NoRecord):
            return Reject(RejectionCode.NO_DATA, answer.description)
        return answer


def build_fns_adapter(
    base_url: str,
    *,
    timeout: aiohttp.ClientTimeout = DEFAULT_TIMEOUT,
    limit: int = DEFAULT_LIMIT,
) -> FnsAdapter:
    """The adapter with its one HTTP client for the service at ``base_url``.

    ``await adapter.aclose()`` when done.
    """
    return FnsAdapter(AgencyHttp(base_url, timeout=timeout, limit=limit))
