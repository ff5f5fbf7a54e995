"""The ops REST API: ``/api/v1/ops/...`` and ``/api/v1/kpi``, for operators.

What ``/ui`` shows and the ``smevbus queues|kpi|dlq purge`` commands print, as JSON, over
one :class:`~gateway.ops.console_api.OpsConsole`. Every route needs an operator token
(:class:`~gateway.api.operators.OperatorAuth`: ``Authorization: Bearer`` or the ``/ui``
cookie; 401 ``unauthenticated`` otherwise); replay and purge are journaled with that
operator's name. Errors are ``application/problem+json`` with the stable codes of
:mod:`gateway.core.errors`, as in the rest of ``/api/v1``.
"""

# No ``from __future__ import annotations``: FastAPI resolves the endpoints'
# ``Annotated[..., Depends(...)]`` aliases, local to ``ops_router``, at definition time.

from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Annotated

from fastapi import APIRouter, Body, Depends, FastAPI, Path, Query, Request
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer

from gateway.api.operators import OperatorAuth
from gateway.api.ops_views import dead_letter_detail_out, kpi_out, replay_out, wire
from gateway.api.rest import ProblemRoute, problems
from gateway.core.errors import NotFound, SchemaViolation
from gateway.core.registry import MNEMONIC_PATTERN
from gateway.ops.console_api import OpsConsole
from gateway.ops.kpi import Period
from gateway.transport.base import Direction
from gateway.wire.ops import (
    KPI_PATH,
    OPS_PREFIX,
    AgencyList,
    AgencyOut,
    DeadLetterDetailOut,
    DeadLetterList,
    DeadLetterOut,
    KpiOut,
    OverviewOut,
    PurgeOut,
    QueueList,
    QueueOut,
    ReplayIn,
    ReplayOut,
    TraceList,
)

#: The KPI period when ``from`` is not given: this long before ``to``.
DEFAULT_KPI_SPAN = timedelta(days=1)

_bearer = HTTPBearer(
    auto_error=False,
    scheme_name="operatorToken",
    description="An operator token (SMEVBUS_OPS_TOKENS); it names the operator.",
)

ConsoleProvider = Callable[[], OpsConsole]


def bus_console(app: FastAPI) -> OpsConsole:
    """The app's console: ``app.state.console`` if set (tests, a fake), else made once
    over the running bus (``app.state.bus``), so agency checks are remembered."""
    console: OpsConsole | None = getattr(app.state, "console", None)
    if console is None:
        from gateway.ops.console import BusConsole

        console = app.state.console = BusConsole.of(app.state.bus)
    return console


Participant = Annotated[str, Path(pattern=MNEMONIC_PATTERN, description="Participant mnemonic")]
DirectionPath = Annotated[
    Direction, Path(description="`requests` (to providers) or `responses` (to consumers)")
]


def ops_router(auth: OperatorAuth, console: ConsoleProvider) -> APIRouter:
    """The ops routes over the console ``console()`` returns."""

    async def operator(
        request: Request,
        _credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(_bearer)],
    ) -> str:
        return auth.operator_for(request)

    Operator = Annotated[str, Depends(operator)]  # noqa: N806
    api = APIRouter(route_class=ProblemRoute, tags=["operations"])
    ops = APIRouter(prefix=OPS_PREFIX, route_class=ProblemRoute, dependencies=[Depends(operator)])
    letters = "/dead-letters/{direction}/{participant}"

    @ops.get(
        "/overview",
        response_model=OverviewOut,
        summary="Traffic over the last hour, queues, agencies",
        responses=problems(401),
    )
    async def get_overview() -> OverviewOut:
        return wire(OverviewOut, await console().overview())

    @ops.get(
        "/queues",
        response_model=QueueList,
        summary="Every participant queue: depth, oldest age, dead letters",
        responses=problems(401),
    )
    async def get_queues() -> QueueList:
        return QueueList(items=[wire(QueueOut, q) for q in await console().queues()])

    @ops.get(
        "/agencies",
        response_model=AgencyList,
        summary="Agencies: availability and answer times over the last hour, last check",
        responses=problems(401),
    )
    async def get_agencies() -> AgencyList:
        return AgencyList(items=[wire(AgencyOut, a) for a in await console().agencies()])

    @ops.post(
        "/agencies/{participant}/check",
        response_model=AgencyOut,
        summary="Check now that the bus reaches the agency (its SMEVBUS_AGENCY_PROBES URL)",
        responses=problems(401, 404, 422),
    )
    async def check_agency(participant: Participant) -> AgencyOut:
        return wire(AgencyOut, await console().check_agency(participant))

    @ops.get(
        "/trace/{ident}",
        response_model=TraceList,
        summary="Lifecycle trace of a MessageID, or of every part of a service request",
        responses=problems(401, 404, 422),
    )
    async def get_trace(ident: Annotated[str, Path(max_length=64)]) -> TraceList:
        traces = await console().trace(ident)
        if not traces:
            raise NotFound(f"no message or service request {ident}", ident=ident)
        return TraceList(ident=ident, traces=list(traces))

    @ops.get(
        letters,
        response_model=DeadLetterList,
        summary="A queue's dead letters, oldest first",
        responses=problems(401, 404, 422),
    )
    async def list_dead_letters(
        direction: DirectionPath,
        participant: Participant,
        limit: Annotated[int, Query(ge=1, le=1000)] = 100,
    ) -> DeadLetterList:
        rows = await console().dead_letters(direction, participant, limit=limit)
        return DeadLetterList(items=[wire(DeadLetterOut, r) for r in rows])

    @ops.get(
        letters + "/{message_id}",
        response_model=DeadLetterDetailOut,
        summary="One dead letter: its XML and journal history",
        responses=problems(401, 404, 422),
    )
    async def get_dead_letter(
        direction: DirectionPath,
        participant: Participant,
        message_id: Annotated[str, Path(max_length=64)],
    ) -> DeadLetterDetailOut:
        found = await console().dead_letter(direction, participant, message_id)
        return dead_letter_detail_out(found)

    @ops.post(
        letters + "/replay",
        response_model=ReplayOut,
        summary="Put dead letters (these, or all) back in their queue",
        description="Each replayed message is journaled QUEUED with the operator as actor.",
        responses=problems(401, 404, 422),
    )
    async def replay_dead_letters(
        direction: DirectionPath,
        participant: Participant,
        who: Operator,
        body: Annotated[ReplayIn | None, Body()] = None,
    ) -> ReplayOut:
        wanted = None if body is None else body.message_ids
        report = await console().replay(direction, participant, wanted, operator=who)
        return replay_out(report)

    @ops.post(
        letters + "/purge",
        response_model=PurgeOut,
        summary="Drop every dead letter of the queue for good",
        description="Each dropped message is journaled PURGED with the operator as actor.",
        responses=problems(401, 404, 422),
    )
    async def purge_dead_letters(
        direction: DirectionPath, participant: Participant, who: Operator
    ) -> PurgeOut:
        return PurgeOut(purged=await console().purge(direction, participant, operator=who))

    @api.get(
        KPI_PATH,
        response_model=KpiOut,
        summary="Agency availability and quality KPIs, service outcomes, over a period",
        description=(
            "Requests and service requests created in `[from, to)`; `to` defaults to now, "
            "`from` to a day before `to`. The columns are those of the open-data export "
            "(docs/operations.md)."
        ),
        responses=problems(401, 422),
        dependencies=[Depends(operator)],
    )
    async def get_kpi(
        start: Annotated[datetime | None, Query(alias="from")] = None,
        end: Annotated[datetime | None, Query(alias="to")] = None,
        agency: Annotated[str | None, Query(pattern=MNEMONIC_PATTERN)] = None,
    ) -> KpiOut:
        return kpi_out(await console().kpis(kpi_period(start, end), agency=agency))

    api.include_router(ops)
    return api


def kpi_period(start: datetime | None, end: datetime | None) -> Period:
    """``[from, to)`` of a KPI request, defaults filled in; 422 when it is no period."""
    for name, value in (("from", start), ("to", end)):
        if value is not None and value.utcoffset() is None:
            raise SchemaViolation(f"query.{name}: give a time zone (Z or +03:00)", field=name)
    end = end or datetime.now(UTC)
    start = start or end - DEFAULT_KPI_SPAN
    if end <= start:
        raise SchemaViolation("query.to: the period must end after it starts", field="to")
    return Period(start, end)
