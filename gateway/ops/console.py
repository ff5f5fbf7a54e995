"""The operator's console over a running bus: :class:`BusConsole` implements
:class:`~gateway.ops.console_api.OpsConsole` for ``/ui``, the ops REST API and the CLI.

It reads what the bus already holds and never sits on a message's path: the journal
(traffic, KPIs, traces, the oldest message per queue) through report queries on a read
pool of its own (the samplers', :func:`gateway.ops.kpi_queries.ops_database`, so a slow
report never holds a connection a message needs), the transport or RabbitMQ's
management API (depths, dead letters), and the agencies' health endpoints
(:mod:`gateway.ops.probes`). However many operators watch, each of those reads runs
once a second at most (:class:`~gateway.ops.shared.SharedRead`). Replays and
purges go through :class:`~gateway.ops.deadletters.DeadLetterDesk` with the operator's
name, which the journal keeps as the actor of each move.
"""

from __future__ import annotations

import asyncio
import uuid
from datetime import timedelta
from typing import TYPE_CHECKING, Final

from gateway.core.clock import Clock
from gateway.core.errors import InternalError, InvalidContent, NotFound
from gateway.core.registry import Registry
from gateway.ops.console_api import AgencyView, Overview, QueueView
from gateway.ops.deadletters import (
    DeadLetterDesk,
    DeadLetterDetail,
    DeadLetterSummary,
    ReplayReport,
)
from gateway.ops.kpi import (
    AVAILABILITY_TARGET,
    DEFAULT_ANSWER_TIMEOUT,
    AgencyKpi,
    KpiReport,
    Period,
    compute_kpis,
)
from gateway.ops.kpi_queries import KpiDatabase
from gateway.ops.probes import AgencyProbes, ProbeResult
from gateway.ops.queues import ManagementApi, read_queues
from gateway.ops.shared import SharedRead
from gateway.ops.tracing import message_trace
from gateway.ops.traffic import traffic
from gateway.store.base import ServiceRequests, Store
from gateway.store.records import canonical_message_id
from gateway.transport.base import Direction, Transport
from gateway.wire.rest import MessageTrace

if TYPE_CHECKING:
    from gateway.bus import Bus

#: The window the agencies' figures on the overview cover.
AGENCY_WINDOW: Final = timedelta(hours=1)
NEVER_CHECKED: Final = ProbeResult(None, "not checked yet")
#: How long one read of queues, traffic or KPIs serves every viewer, seconds.
SHARED_S: Final = 1.0


class BusConsole:
    def __init__(
        self,
        *,
        transport: Transport,
        journal: Store,
        service_requests: ServiceRequests,
        registry: Registry,
        clock: Clock,
        probes: AgencyProbes,
        reports: KpiDatabase,
        management: ManagementApi | None = None,
        answer_timeout: timedelta = DEFAULT_ANSWER_TIMEOUT,
    ) -> None:
        self.transport = transport
        self.journal = journal
        self.service_requests = service_requests
        self.registry = registry
        self.clock = clock
        self.probes = probes
        self.reports = reports
        self.management = management
        self.answer_timeout = answer_timeout
        self.desk = DeadLetterDesk(transport, journal, clock)
        self._checks: dict[str, ProbeResult] = {}
        # Every viewer's refresh is served from these (gateway.ops.shared).
        self._traffic = SharedRead(lambda: traffic(self.reports, now=self.clock.now()), SHARED_S)
        self._queues = SharedRead(self._read_queues, SHARED_S)
        self._recent = SharedRead(self._recent_kpis, SHARED_S)

    @classmethod
    def of(cls, bus: Bus) -> BusConsole:
        """The console of a running bus, probing the agencies its settings name."""
        settings = bus.settings
        if bus.samplers.journal is None:
            raise InternalError("the operator's console needs a journal on an SQL database")
        return cls(
            transport=bus.transport,
            journal=bus.journal,
            service_requests=bus.aggregator.store,
            registry=bus.registry,
            clock=bus.clock,
            probes=AgencyProbes(settings.agency_probes, timeout_s=settings.agency_probe_timeout_s),
            reports=bus.samplers.journal,
            management=bus.samplers.management,
        )

    @property
    def agency_names(self) -> tuple[str, ...]:
        """The participants that provide some message type: the agencies."""
        return tuple(p.mnemonic for p in self.registry.participants if p.provides)

    # --- reading ---------------------------------------------------------------------

    async def overview(self) -> Overview:
        history, queues, agencies = await asyncio.gather(
            self._traffic.get(), self.queues(), self.agencies()
        )
        return Overview(
            rate=history[-1],
            history=history,
            queues=queues,
            agencies=agencies,
            availability_target=AVAILABILITY_TARGET,
        )

    async def queues(self) -> tuple[QueueView, ...]:
        return await self._queues.get()

    async def _read_queues(self) -> tuple[QueueView, ...]:
        return await read_queues(
            self.transport,
            self.registry.mnemonics,
            now=self.clock.now(),
            journal=self.reports,
            management=self.management,
        )

    async def agencies(self) -> tuple[AgencyView, ...]:
        totals = (await self._recent.get()).agency_totals()
        return tuple(self._agency(name, totals.get(name)) for name in self.agency_names)

    async def check_agency(self, participant: str) -> AgencyView:
        self._known(participant)
        self._checks[participant] = await self.probes.check(participant)
        totals = (await self._recent_kpis(participant)).agency_totals()
        return self._agency(participant, totals.get(participant))

    async def trace(self, ident: str) -> tuple[MessageTrace, ...]:
        try:
            message_id = canonical_message_id(ident)
        except InvalidContent:
            return ()
        try:
            return (await message_trace(self.journal, await self.journal.get(message_id)),)
        except NotFound:
            pass
        try:
            request = await self.service_requests.get(uuid.UUID(message_id))
        except NotFound:
            return ()
        parts = [str(p.message_id) for p in request.state.parts if p.message_id is not None]
        return tuple(
            [await message_trace(self.journal, await self.journal.get(mid)) for mid in parts]
        )

    async def kpis(self, period: Period, *, agency: str | None = None) -> KpiReport:
        return await compute_kpis(
            self.reports,
            period,
            now=self.clock.now(),
            agency=agency,
            answer_timeout=self.answer_timeout,
        )

    # --- dead letters ----------------------------------------------------------------

    async def dead_letters(
        self, direction: Direction, participant: str, *, limit: int = 100
    ) -> list[DeadLetterSummary]:
        self._known(participant)
        return await self.desk.listing(direction, participant, limit=limit)

    async def dead_letter(
        self, direction: Direction, participant: str, message_id: str
    ) -> DeadLetterDetail:
        self._known(participant)
        return await self.desk.show(direction, participant, message_id)

    async def replay(
        self,
        direction: Direction,
        participant: str,
        message_ids: list[str] | None,
        *,
        operator: str,
    ) -> ReplayReport:
        self._known(participant)
        report = await self.desk.replay(direction, participant, message_ids, operator=operator)
        self._queues.forget()
        return report

    async def purge(self, direction: Direction, participant: str, *, operator: str) -> int:
        self._known(participant)
        report = await self.desk.purge(direction, participant, operator=operator)
        self._queues.forget()
        return len(report.purged)

    # --- plumbing --------------------------------------------------------------------

    def _known(self, participant: str) -> None:
        if participant not in self.registry.mnemonics:
            raise NotFound(f"no participant {participant} on the bus", participant=participant)

    async def _recent_kpis(self, agency: str | None = None) -> KpiReport:
        now = self.clock.now()
        return await self.kpis(Period(now - AGENCY_WINDOW, now), agency=agency)

    def _agency(self, participant: str, kpi: AgencyKpi | None) -> AgencyView:
        check = self._checks.get(participant, NEVER_CHECKED)
        return AgencyView(
            participant=participant,
            requests=kpi.volume if kpi else 0,
            availability=kpi.availability if kpi else None,
            answer_p50_s=kpi.answer_p50_s if kpi else None,
            answer_p95_s=kpi.answer_p95_s if kpi else None,
            reachable=check.reachable,
            detail=check.detail,
        )
