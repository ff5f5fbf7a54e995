"""What the operator's console reads and does: one facade for ``/ui``, the ops REST API
(``/api/v1/ops``, ``/api/v1/kpi``) and the CLI (``smevbus queues``, ``kpi``, ``dlq``).

:class:`OpsConsole` is the protocol; :mod:`gateway.ops.console` implements it over a
running bus. The views are plain frozen dataclasses, ready to render or serialize.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Protocol

from gateway.ops.deadletters import DeadLetterDetail, DeadLetterSummary, ReplayReport
from gateway.ops.kpi import KpiReport, Period
from gateway.transport.base import Direction
from gateway.wire.rest import MessageTrace


@dataclass(frozen=True, slots=True)
class QueueView:
    """One participant queue as the operator sees it."""

    direction: Direction
    participant: str
    #: Messages waiting to be taken.
    ready: int
    #: Taken and not yet settled; None where the transport cannot tell.
    unacked: int | None
    #: Consumers attached now; None where the transport cannot tell.
    consumers: int | None
    #: Age of the oldest message journaled ACCEPTED, QUEUED or DELIVERED (not settled), seconds;
    #: 0 when none waits, None where the journal is not read.
    oldest_age_s: float | None
    #: Messages in the queue's dead-letter queue.
    dead_letters: int

    @property
    def name(self) -> str:
        return f"{self.direction.value}.{self.participant}"


@dataclass(frozen=True, slots=True)
class AgencyView:
    """One provider (agency) over the KPI window, and whether the bus can reach it now."""

    participant: str
    requests: int
    #: Share of settled requests answered (not AGENCY_UNAVAILABLE, timed out or dead-lettered).
    availability: float | None
    answer_p50_s: float | None
    answer_p95_s: float | None
    #: Result of the last connectivity check; None if never checked.
    reachable: bool | None
    #: What the last check found (``"200 in 12 ms"``, ``"connection refused"``, ...).
    detail: str


@dataclass(frozen=True, slots=True)
class Rate:
    """Messages and faults per second over the last ``window_s`` seconds, at ``at``."""

    at: datetime
    window_s: float
    messages_per_s: float
    faults_per_s: float
    #: p50/p95 of end-to-end answer time over the window, seconds (None without traffic).
    latency_p50_s: float | None
    latency_p95_s: float | None


@dataclass(frozen=True, slots=True)
class Overview:
    rate: Rate
    #: Rates over the last hour in equal steps, oldest first (for the small charts).
    history: tuple[Rate, ...]
    queues: tuple[QueueView, ...]
    agencies: tuple[AgencyView, ...]
    #: The availability target the agencies are judged against (0.95).
    availability_target: float


class OpsConsole(Protocol):
    async def overview(self) -> Overview: ...

    async def queues(self) -> tuple[QueueView, ...]: ...

    async def agencies(self) -> tuple[AgencyView, ...]: ...

    async def check_agency(self, participant: str) -> AgencyView:
        """Probe ``participant``'s adapter/agency now (raises NotFound if unknown)."""
        ...

    async def trace(self, ident: str) -> tuple[MessageTrace, ...]:
        """A MessageID's trace, or every part's trace of a service request id; empty if
        neither is known."""
        ...

    async def dead_letters(
        self, direction: Direction, participant: str, *, limit: int = 100
    ) -> list[DeadLetterSummary]: ...

    async def dead_letter(
        self, direction: Direction, participant: str, message_id: str
    ) -> DeadLetterDetail: ...

    async def replay(
        self,
        direction: Direction,
        participant: str,
        message_ids: list[str] | None,
        *,
        operator: str,
    ) -> ReplayReport:
        """Replay (these, or all) dead letters; journaled with ``operator``."""
        ...

    async def purge(self, direction: Direction, participant: str, *, operator: str) -> int:
        """Drop every dead letter of the queue; each journaled with ``operator``; how many."""
        ...

    async def kpis(self, period: Period, *, agency: str | None = None) -> KpiReport: ...
