"""The MVD migration adapter: bus passport-validity and residence-registration requests
answered from the migration service's XML-over-HTTP interface.

One :class:`httpx.AsyncClient` per adapter (per process), with explicit timeouts, posts
one native ``<Query>`` to ``{base_url}/query`` per request. The answer is read with the
bus's hardened parser (:func:`gateway.xml.parse.parse_secure`) and validated against
the native XSD before it is mapped (:mod:`.mapping`). Everything runs inside
:func:`adapters.sdk.native_calls.agency_call`, so the kit sees:

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

import httpx
from lxml import etree

from adapters.mvd_migration import mapping
from adapters.mvd_migration.native import CONTENT_TYPE, ErrorCode, native_schema, q, to_bytes
from adapters.sdk.adapter import (
    AgencyError,
    AgencyUnavailable,
    Answer,
    Handler,
    Reject,
    RequestContext,
)
from adapters.sdk.native_calls import agency_call
from gateway.core.envelope import RejectionCode
from gateway.core.errors import SmevbusError
from gateway.xml.parse import parse_secure
from gateway.xml.text import text_of

QUERY_PATH: Final = "/query"
#: Native answers are a few KiB; anything larger is not a migration-service answer.
MAX_ANSWER_BYTES: Final = 1024 * 1024
DEFAULT_TIMEOUT: Final = httpx.Timeout(10.0, connect=3.0)
DEFAULT_LIMITS: Final = httpx.Limits(max_connections=50, max_keepalive_connections=20)

Mapper = Callable[[etree._Element], etree._Element | mapping.NoRecord]


class MvdMigrationAdapter:
    """The kit's :class:`~adapters.sdk.adapter.Adapter` for the MVD migration service."""

    name = "mvd_migration"

    def __init__(self, http: httpx.AsyncClient) -> None:
        self.http = http
        """The one client for this process; its ``base_url`` is the service's root."""

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
        with agency_call(operation):
            response = await self.http.post(
                QUERY_PATH, content=to_bytes(query), headers={"Content-Type": CONTENT_TYPE}
            )
            answer = _read_answer(operation, response)
            _check_query_id(operation, query, answer)
            try:
                mapped = mapper(answer)
            except (mapping.MappingError, ValueError) as exc:
                raise AgencyError(f"{operation}: unusable answer: {exc}") from exc
        if isinstance(mapped, mapping.NoRecord):
            return Reject(RejectionCode.NO_DATA, mapped.description)
        return mapped


def _read_answer(operation: str, response: httpx.Response) -> etree._Element:
    """The validated native ``<Answer>``; agency errors raised as the kit's two kinds."""
    try:
        answer = parse_secure(response.content, max_bytes=MAX_ANSWER_BYTES)
        if answer.tag == q("Answer"):
            native_schema().validate(answer, "answer")
    except SmevbusError as exc:
        if response.status_code >= 400:
            response.raise_for_status()  # the status says more than the body
        raise AgencyError(
            f"{operation}: malformed answer from the agency (HTTP {response.status_code}): "
            f"{exc.message}",
            status=response.status_code,
        ) from exc
    if answer.tag != q("Answer"):
        response.raise_for_status()
        raise AgencyError(f"{operation}: the agency answered <{answer.tag}>, not <Answer>")
    error = answer.find(q("Error"))
    if error is not None:
        _raise_error(operation, response.status_code, error)
    response.raise_for_status()  # any other non-2xx without an <Error>
    return answer


def _raise_error(operation: str, status: int, error: etree._Element) -> None:
    code, text = error.get("code", ""), text_of(error).strip()
    message = f"{operation}: the agency answered HTTP {status} {code}: {text}"
    if status >= 500 or code in (ErrorCode.SYSTEM_ERROR, ErrorCode.SERVICE_UNAVAILABLE):
        raise AgencyUnavailable(message, status=status, error_code=code)
    raise AgencyError(message, status=status, error_code=code)


def _check_query_id(operation: str, query: etree._Element, answer: etree._Element) -> None:
    sent, echoed = query.get("queryId"), answer.get("queryId")
    if sent is not None and echoed is not None and sent != echoed:
        raise AgencyError(f"{operation}: the agency answered query {echoed}, not {sent}")


def build_mvd_adapter(
    base_url: str,
    *,
    timeout: httpx.Timeout = DEFAULT_TIMEOUT,
    limits: httpx.Limits = DEFAULT_LIMITS,
    transport: httpx.AsyncBaseTransport | None = None,
) -> MvdMigrationAdapter:
    """The adapter with its one HTTP client for the service at ``base_url``.

    ``await adapter.aclose()`` when done. ``transport`` is for tests (e.g.
    ``httpx.ASGITransport`` around :func:`~adapters.mvd_migration.mock_service.create_mock_mvd`).
    """
    http = httpx.AsyncClient(
        base_url=base_url.rstrip("/"),
        timeout=timeout,
        limits=limits,
        transport=transport,
        headers={"Accept": "application/xml"},
        follow_redirects=False,
    )
    return MvdMigrationAdapter(http)
