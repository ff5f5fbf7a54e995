"""The MVD migration adapter: bus passport-validity and residence-registration requests
answered from the migration service's XML-over-HTTP interface.

One :class:`~adapters.sdk.xml_http.AgencyHttp` (aiohttp) per adapter (per process), with
explicit timeouts, posts one native ``<Query>`` to ``{base_url}/query`` per request
(:class:`~adapters.sdk.xml_http.XmlOverHttp`). The answer is read with the bus's
hardened parser (:func:`gateway.xml.parse.parse_secure`) and validated against the
native XSD before it is mapped (:mod:`.mapping`), so the kit sees:

* HTTP 5xx (``SYSTEM_ERROR``, ``SERVICE_UNAVAILABLE``), timeouts, refused connections
  -> :class:`AgencyUnavailable` (retried, then ``AGENCY_UNAVAILABLE``);
* HTTP 4xx (``FORMAT_ERROR``), an answer that is not well-formed, not valid against the
  native XSD, of the wrong kind or for another query -> :class:`AgencyError`
  (``FAILURE``);
* ``U`` / ``personKnown="false"`` -> ``Reject(NO_DATA)``.

A CLI starts it with :func:`build_mvd_adapter` and closes it with
:meth:`MvdMigrationAdapter.aclose`.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Final

import aiohttp
from lxml import etree

from adapters.mvd_migration import mapping
from adapters.mvd_migration.native import ErrorCode, native_schema, q
from adapters.sdk.adapter import (
    AgencyError,
    Answer,
    Handler,
    Reject,
    RequestContext,
)
from adapters.sdk.native_calls import agency_call
from adapters.sdk.xml_http import (
    DEFAULT_LIMIT,
    DEFAULT_TIMEOUT,
    AgencyHttp,
    NativeReplies,
    XmlOverHttp,
)
from gateway.core.envelope import RejectionCode

QUERY_PATH: Final = "/query"
ANSWERS: Final = NativeReplies(
    root=q("Answer"),
    error=q("Error"),
    unavailable_codes=frozenset({ErrorCode.SYSTEM_ERROR, ErrorCode.SERVICE_UNAVAILABLE}),
    schema=native_schema,
    # Native answers are a few KiB; anything larger is not a migration-service answer.
    max_bytes=1024 * 1024,
    what="answer",
)

Mapper = Callable[[etree._Element], etree._Element | mapping.NoRecord]


class MvdMigrationAdapter:
    """The kit's :class:`~adapters.sdk.adapter.Adapter` for the MVD migration service."""

    name = "mvd_migration"

    def __init__(self, http: AgencyHttp) -> None:
        self.http = http
        """The one client for this process; its ``base_url`` is the service's root."""
        self.agency = XmlOverHttp(http, ANSWERS)

    def handlers(self) -> Mapping[str, Handler]:
        return {mapping.PASSPORT: self.passport_validity, mapping.RESIDENCE: self.residence}

    async def aclose(self) -> None:
        """Close the HTTP client (its connection pool)."""
        await self.http.aclose()

    # --- handlers ---------------------------------------------------------------------

    async def passport_validity(self, request: etree._Element, context: RequestContext) -> Answer:
        try:
            query = mapping.passport_query(
                request, query_id=str(context.message_id), system=context.sender
            )
        except mapping.BadRequest as exc:
            return Reject(RejectionCode.INVALID_REQUEST, str(exc))
        return await self._ask("PassportCheck", query, mapping.passport_response)

    async def residence(self, request: etree._Element, context: RequestContext) -> Answer:
        try:
            query = mapping.residence_query(
                request, query_id=str(context.message_id), system=context.sender
            )
        except mapping.BadRequest as exc:
            return Reject(RejectionCode.INVALID_REQUEST, str(exc))
        kind = mapping.requested_kind(request)
        return await self._ask(
            "ResidenceLookup", query, lambda answer: mapping.residence_response(answer, kind)
        )

    # --- the native call --------------------------------------------------------------

    async def _ask(self, operation: str, query: etree._Element, mapper: Mapper) -> Answer:
        answer = await self.agency.post(operation, QUERY_PATH, query)
        with agency_call(operation):
            try:
                mapped = mapper(answer)
            except (mapping.MappingError, ValueError) as exc:
                raise AgencyError(f"{operation}: unusable answer: {exc}") from exc
        if isinstance(mapped, mapping.NoRecord):
            return Reject(RejectionCode.NO_DATA, mapped.description)
        return mapped


def build_mvd_adapter(
    base_url: str,
    *,
    timeout: aiohttp.ClientTimeout = DEFAULT_TIMEOUT,
    limit: int = DEFAULT_LIMIT,
) -> MvdMigrationAdapter:
    """The adapter with its one HTTP client for the service at ``base_url``.

    ``await adapter.aclose()`` when done.
    """
    return MvdMigrationAdapter(AgencyHttp(base_url, timeout=timeout, limit=limit))
