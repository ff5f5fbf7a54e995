"""The REST API (``/api/v1``): service requests and message traces, JSON over HTTP.

``rest_router`` builds an :class:`~fastapi.APIRouter`; the app includes it next to
``/ws``. Every caller is a portal authenticated by :class:`~gateway.api.auth.TokenAuth`
and sees only its own service requests and the bus messages it sent or received: any
other id is answered ``404`` exactly as an unknown one, so ids cannot be probed.

Every error, request validation included, is ``application/problem+json`` made by
:func:`gateway.core.faults.problem_json`, with the status its class declares.

``POST /api/v1/service-requests`` answers ``202 Accepted`` for a new request and
``200 OK`` with the same body when an ``Idempotency-Key`` the caller already used is
presented again with the same body; the same key with another body (any of
``service``, ``applicant``, ``callback_url``, ``deadline_s``) is ``422``
``idempotency_key_reused`` and the first request stands. A ``callback_url`` is checked
here (:meth:`gateway.aggregator.callback_guard.CallbackGuard.check`: its syntax, the
operator's allowed hosts, and every address its host resolves to) before the aggregator
sees the request.

The wire models live in :mod:`gateway.wire.rest`, shared with the client and with
the result callbacks.
"""

# No ``from __future__ import annotations``: FastAPI resolves the endpoints'
# ``Annotated[..., Depends(...)]`` aliases, which are local to ``rest_router``, at
# definition time.

import uuid
from collections.abc import Awaitable, Callable, Coroutine, Sequence
from typing import Annotated, Any, Protocol

import structlog
from fastapi import APIRouter, Depends, Header, Path, Query, Request, Response
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from fastapi.routing import APIRoute
from pydantic import AwareDatetime
from starlette.exceptions import HTTPException as StarletteHTTPException

from gateway.aggregator.callback_guard import CallbackGuard
from gateway.api.auth import TokenAuth
from gateway.api.views import service_request_view
from gateway.core.errors import (
    Conflict,
    InternalError,
    InvalidContent,
    NotFound,
    SchemaViolation,
    SmevbusError,
)
from gateway.core.faults import problem_json
from gateway.core.service_lifecycle import ServiceState
from gateway.core.xml_text import escape_forbidden, forbidden_char
from gateway.ops.tracing import message_trace
from gateway.store.base import DEFAULT_PAGE_SIZE, MAX_PAGE_SIZE, Store
from gateway.store.records import canonical_message_id
from gateway.store.service_requests import ServiceRequestPage, ServiceRequestRecord
from gateway.wire.rest import (
    PREFIX,
    PROBLEM_MEDIA_TYPE,
    XML_CHAR_ERROR,
    Links,
    MessageTrace,
    PageLinks,
    Problem,
    ServiceRequestList,
    ServiceRequestView,
    SubmitServiceRequest,
    Submitted,
)

log = structlog.get_logger(__name__)


class ServiceRequests(Protocol):
    """What the REST API needs of :class:`gateway.aggregator.service.Aggregator`."""

    async def submit(
        self,
        *,
        service: str,
        applicant: dict[str, Any],
        participant: str,
        idempotency_key: str | None = None,
        deadline_s: float | None = None,
        callback_url: str | None = None,
    ) -> tuple[ServiceRequestRecord, bool]: ...

    async def get(self, id: str) -> ServiceRequestRecord: ...

    async def find(self, **filters: Any) -> ServiceRequestPage: ...

    async def cancel(self, id: str, participant: str) -> ServiceRequestRecord: ...


AggregatorProvider = Callable[[Request], ServiceRequests]
JournalProvider = Callable[[Request], Store]


# --- problem+json -----------------------------------------------------------------


def problem_response(error: BaseException, *, instance: str | None = None) -> JSONResponse:
    body = problem_json(error, instance=instance)
    headers = {"WWW-Authenticate": "Bearer"} if body["status"] == 401 else None
    return JSONResponse(
        body, status_code=body["status"], media_type=PROBLEM_MEDIA_TYPE, headers=headers
    )


def _validation_error(exc: RequestValidationError) -> SmevbusError:
    errors: Sequence[Any] = exc.errors()
    if any(e.get("type") == "json_invalid" for e in errors):
        return InvalidContent("the request body is not valid JSON")
    described = [_described(e) for e in errors] or [("", "invalid request")]
    field, message = described[0]
    return SchemaViolation(
        f"{field}: {message}" if field else message,
        field=field,
        errors=[f"{f}: {m}" for f, m in described],
    )


def _described(error: Any) -> tuple[str, str]:
    """(field, message) of one validation error: the field is its location (``body.x``),
    within a free-form object down to the string at fault; both safe to echo."""
    loc = [str(p) for p in error.get("loc", ())]
    message = str(error.get("msg", ""))
    path = (error.get("ctx") or {}).get("path")
    if error.get("type") == XML_CHAR_ERROR and path:
        loc.append(str(path))
        message = message.removeprefix(f"{path}: ")
    return escape_forbidden(".".join(loc)), escape_forbidden(message)


async def _xml_safe_parameters(request: Request) -> None:
    """Refuse (422) a query, path or header value (or name) holding a character XML 1.0
    cannot carry, naming it: such a value may reach the journal (PostgreSQL refuses NUL)
    or a message. Bodies are checked by their models (:data:`models.XmlText`)."""
    sources = (
        ("query", request.query_params.multi_items()),
        ("path", list(request.path_params.items())),
        ("header", request.headers.items()),
    )
    for where, items in sources:
        for name, value in items:
            char = forbidden_char(name) or forbidden_char(str(value))
            if char is not None:
                if where == "header":  # as the API names its headers: Idempotency-Key
                    name = "-".join(part.capitalize() for part in name.split("-"))
                field = f"{where}.{escape_forbidden(name)}"
                raise SchemaViolation(
                    f"{field}: contains {char}, which XML 1.0 cannot carry; "
                    "remove control characters",
                    field=field,
                )


class ProblemRoute(APIRoute):
    """A route whose every failure (validation, auth, domain, bug) is problem+json."""

    def get_route_handler(self) -> Callable[[Request], Coroutine[Any, Any, Response]]:
        handler = super().get_route_handler()

        async def route(request: Request) -> Response:
            try:
                return await handler(request)
            except RequestValidationError as exc:
                return problem_response(_validation_error(exc), instance=request.url.path)
            except SmevbusError as exc:
                return problem_response(exc, instance=request.url.path)
            except StarletteHTTPException as exc:
                # FastAPI's own refusals, e.g. a body that is not UTF-8 JSON (400).
                error: SmevbusError = (
                    InvalidContent(f"the request could not be read: {exc.detail}")
                    if exc.status_code < 500
                    else InternalError("the bus failed to process the request; retry later")
                )
                return problem_response(error, instance=request.url.path)
            except Exception as exc:  # a bug: never leak it, always answer problem+json
                log.exception("rest_api_error", path=request.url.path)
                return problem_response(exc, instance=request.url.path)

        return route


def problems(*statuses: int, **described: str) -> dict[int | str, dict[str, Any]]:
    """OpenAPI responses: a problem+json per status; ``described`` says when, by status
    (``_413="..."``)."""
    return {
        s: {
            "model": Problem,
            "content": {PROBLEM_MEDIA_TYPE: {}},
            "description": described.get(f"_{s}", "Problem"),
        }
        for s in statuses
    }


_SUBMIT_PROBLEMS = problems(
    400,
    401,
    403,
    404,
    413,
    422,
    _400="`invalid_content`: the body is not JSON",
    _401="`unauthenticated`: no or an unknown bearer token",
    _403=(
        "`access_denied`: the token's participant may not use the API, or may not request "
        "every message type the service fans out to (the registry decides); nothing is "
        "stored or sent"
    ),
    _404="`not_found`: no such service in the catalogue",
    _413="`message_too_large`: the body is over the gateway's limit (1 MiB by default)",
    _422=(
        "`schema_violation`: a field is missing or invalid (`context.field` names it, "
        "e.g. `body.applicant.child.last_name`), including any string with a character "
        "XML 1.0 cannot carry; `idempotency_key_reused`: the Idempotency-Key was used "
        "before with another body"
    ),
)


RequestId = Annotated[uuid.UUID, Path(description="The service request id")]


# --- the router -------------------------------------------------------------------


def _default_aggregator(request: Request) -> ServiceRequests:
    aggregator: ServiceRequests = request.app.state.bus.aggregator
    return aggregator


def _default_journal(request: Request) -> Store:
    store: Store = request.app.state.bus.journal
    return store


GuardProvider = Callable[[Request], CallbackGuard]


def rest_router(
    auth: Callable[..., Awaitable[str]] | TokenAuth,
    *,
    aggregator_provider: AggregatorProvider = _default_aggregator,
    journal_provider: JournalProvider = _default_journal,
    callback_guard: CallbackGuard | GuardProvider | None = None,
) -> APIRouter:
    """The ``/api/v1`` routes; ``auth`` is a dependency returning the caller's participant.

    The providers find the aggregator and the journal per request (by default on
    ``app.state.bus``, the running :class:`gateway.bus.Bus`). ``callback_guard`` decides
    where a ``callback_url`` may point, or finds the guard per request (default: public
    addresses, any host name).
    """
    if callback_guard is None or isinstance(callback_guard, CallbackGuard):
        fixed = callback_guard or CallbackGuard()

        def fixed_guard(_request: Request) -> CallbackGuard:
            return fixed

        guard_of: GuardProvider = fixed_guard
    else:
        guard_of = callback_guard
    api = APIRouter(
        prefix=PREFIX,
        route_class=ProblemRoute,
        tags=["service requests"],
        dependencies=[Depends(_xml_safe_parameters)],
    )
    Caller = Annotated[str, Depends(auth)]  # noqa: N806

    # Async, so that FastAPI calls them on the event loop, not in a worker thread.
    async def aggregator_of(request: Request) -> ServiceRequests:
        return aggregator_provider(request)

    async def journal_of(request: Request) -> Store:
        return journal_provider(request)

    Aggregator = Annotated[ServiceRequests, Depends(aggregator_of)]  # noqa: N806
    Journal = Annotated[Store, Depends(journal_of)]  # noqa: N806

    def self_url(request: Request, request_id: uuid.UUID) -> str:
        return str(request.url_for("get_service_request", request_id=str(request_id)))

    async def owned(
        aggregator: ServiceRequests, request_id: uuid.UUID, caller: str
    ) -> ServiceRequestRecord:
        record = await aggregator.get(str(request_id))
        if record.participant != caller:
            raise NotFound(f"no service request {request_id}", id=str(request_id))
        return record

    @api.post(
        "/service-requests",
        status_code=202,
        response_model=Submitted,
        summary="Submit a service request (fan-out to agencies)",
        description=(
            "Builds one signed bus message per part of the service from the applicant "
            "data and sends them; the answers are aggregated into one result (poll the "
            "`Location`, or name a `callback_url`).\n\n"
            "**Idempotency-Key**: a POST presenting a key the caller used before, with the "
            "same body (`service`, `applicant`, `callback_url`, `deadline_s`, compared as "
            "canonical JSON), answers `200` with the first request and sends nothing new; "
            "with any other body it is `422 idempotency_key_reused` and the first request "
            "stands (as the IETF httpapi Idempotency-Key draft says)."
        ),
        responses={
            200: {
                "model": Submitted,
                "description": "A retry: the request first made under this Idempotency-Key",
            },
            **_SUBMIT_PROBLEMS,
        },
    )
    async def submit_service_request(
        body: SubmitServiceRequest,
        request: Request,
        response: Response,
        caller: Caller,
        aggregator: Aggregator,
        idempotency_key: Annotated[
            str | None,
            Header(
                alias="Idempotency-Key",
                min_length=1,
                max_length=255,
                description=(
                    "Makes a retried POST (same body) return the same service request; "
                    "the key with another body is refused (422)"
                ),
            ),
        ] = None,
    ) -> Submitted:
        if body.callback_url is not None:
            await guard_of(request).check(body.callback_url)
        record, created = await aggregator.submit(
            service=body.service,
            applicant=body.applicant,
            participant=caller,
            idempotency_key=idempotency_key,
            deadline_s=body.deadline_s,
            callback_url=body.callback_url,
        )
        url = self_url(request, record.id)
        response.status_code = 202 if created else 200
        response.headers["Location"] = url
        return Submitted(id=record.id, status=record.status, links=Links(self_=url))

    @api.get(
        "/service-requests",
        response_model=ServiceRequestList,
        summary="The caller's service requests, oldest first, keyset-paged",
        responses=problems(400, 401, 403, 422),
    )
    async def list_service_requests(
        request: Request,
        caller: Caller,
        aggregator: Aggregator,
        status: ServiceState | None = None,
        service: Annotated[str | None, Query(min_length=1, max_length=63)] = None,
        since: AwareDatetime | None = None,
        limit: Annotated[int, Query(ge=1, le=MAX_PAGE_SIZE)] = DEFAULT_PAGE_SIZE,
        after: Annotated[str | None, Query(min_length=1, max_length=512)] = None,
    ) -> ServiceRequestList:
        filters: dict[str, Any] = {"participant": caller, "limit": limit}
        if status is not None:
            filters["status"] = status
        if service is not None:
            filters["service"] = service
        if since is not None:
            filters["since"] = since
        if after is not None:
            filters["after"] = after
        try:
            page = await aggregator.find(**filters)
        except ValueError as exc:  # a malformed cursor
            raise InvalidContent(str(exc), field="after") from None
        next_url = (
            str(request.url.include_query_params(after=page.next_cursor))
            if page.next_cursor is not None
            else None
        )
        return ServiceRequestList(
            items=[service_request_view(r, self_url(request, r.id)) for r in page.items],
            next_cursor=page.next_cursor,
            links=PageLinks(self_=str(request.url), next=next_url),
        )

    @api.get(
        "/service-requests/{request_id}",
        response_model=ServiceRequestView,
        summary="One service request: status, parts and the aggregated result",
        responses=problems(401, 403, 404, 422),
    )
    async def get_service_request(
        request_id: RequestId, request: Request, caller: Caller, aggregator: Aggregator
    ) -> ServiceRequestView:
        record = await owned(aggregator, request_id, caller)
        return service_request_view(record, self_url(request, record.id))

    @api.delete(
        "/service-requests/{request_id}",
        response_model=ServiceRequestView,
        summary="Cancel a pending service request",
        responses=problems(401, 403, 404, 409, 422),
    )
    async def cancel_service_request(
        request_id: RequestId, request: Request, caller: Caller, aggregator: Aggregator
    ) -> ServiceRequestView:
        record = await owned(aggregator, request_id, caller)
        if record.state.final:
            raise _already_final(record)
        record = await aggregator.cancel(str(request_id), caller)
        if record.status is not ServiceState.CANCELLED:  # became final meanwhile
            raise _already_final(record)
        return service_request_view(record, self_url(request, record.id))

    @api.get(
        "/messages/{message_id}",
        response_model=MessageTrace,
        summary="The lifecycle trace of one bus message the caller sent or received",
        tags=["messages"],
        responses=problems(400, 401, 403, 404, 422),
    )
    async def get_message_trace(
        message_id: Annotated[str, Path(max_length=64)], caller: Caller, journal: Journal
    ) -> MessageTrace:
        message_id = canonical_message_id(message_id)
        message = await journal.get(message_id)
        if caller not in (message.sender, message.recipient):
            raise NotFound(f"no message {message_id}", message_id=message_id)
        return await message_trace(journal, message)

    return api


def _already_final(record: ServiceRequestRecord) -> Conflict:
    return Conflict(
        f"service request {record.id} is already {record.status} and cannot be cancelled",
        id=str(record.id),
        status=str(record.status),
    )


__all__ = [
    "AggregatorProvider",
    "JournalProvider",
    "ProblemRoute",
    "ServiceRequests",
    "problem_response",
    "problems",
    "rest_router",
]
