"""Agency availability and quality KPIs, and service-request outcomes, from the journal.

An operator (and the regional open-data portal) asks of a period: how often did each
agency's information system answer, how fast, how often did it refuse; how did the
service requests end and how long did a citizen wait. :func:`compute_kpis` asks the
database (:mod:`gateway.ops.kpi_queries`, aggregates only) and returns a
:class:`KpiReport` of frozen values; the ratios are derived here.

Definitions (``docs/operations.md`` has them for readers):

* **volume**: requests created in the period that reached the agency's queue (test
  messages and requests the bus itself refused or failed are not the agency's).
* **availability** = (answered + rejected) / (answered + rejected + unavailable +
  timed_out + dead_lettered): the share of *settled* requests the agency's system
  answered at all (data or a refusal); requests still pending are left out.
  ``None`` when nothing settled.
* **rejection rate** = rejected / (answered + rejected): refusals among answers.
* **answer time** p50/p95: request journaled -> final answer journaled, over
  answered and rejected requests.
* per service: counts per status and time to result p50/p95 (submission -> final
  status, cancelled requests excluded).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any, Final

from gateway.ops.kpi_queries import KpiDatabase, agency_sql, service_sql
from gateway.store.records import require_aware

#: A request unanswered this long after it was sent counts as timed out (the
#: catalogue's part deadline); younger ones are pending.
DEFAULT_ANSWER_TIMEOUT: Final = timedelta(minutes=5)
#: The target availability of an agency's information system.
AVAILABILITY_TARGET: Final = 0.95


@dataclass(frozen=True, slots=True)
class Period:
    """``[start, end)`` in aware UTC datetimes."""

    start: datetime
    end: datetime

    def __post_init__(self) -> None:
        require_aware("start", self.start)
        require_aware("end", self.end)
        if self.end <= self.start:
            raise ValueError(f"period ends ({self.end}) before it starts ({self.start})")


def _ratio(part: int, whole: int) -> float | None:
    return part / whole if whole else None


@dataclass(frozen=True, slots=True)
class AgencyKpi:
    """One agency's figures for one message type, or for all (``message_type`` None)."""

    agency: str
    message_type: str | None
    volume: int
    answered: int
    rejected: int
    unavailable: int
    timed_out: int
    dead_lettered: int
    pending: int
    answer_p50_s: float | None
    answer_p95_s: float | None

    @property
    def settled(self) -> int:
        return self.volume - self.pending

    @property
    def availability(self) -> float | None:
        return _ratio(self.answered + self.rejected, self.settled)

    @property
    def rejection_rate(self) -> float | None:
        return _ratio(self.rejected, self.answered + self.rejected)

    @property
    def meets_target(self) -> bool | None:
        availability = self.availability
        return None if availability is None else availability >= AVAILABILITY_TARGET


@dataclass(frozen=True, slots=True)
class ServiceKpi:
    service: str
    volume: int
    completed: int
    partial: int
    failed: int
    timed_out: int
    cancelled: int
    pending: int
    result_p50_s: float | None
    result_p95_s: float | None


@dataclass(frozen=True, slots=True)
class KpiReport:
    period: Period
    #: When the figures were computed (pending vs timed out is judged at this time).
    computed_at: datetime
    answer_timeout: timedelta
    #: Per agency and message type, then the agency's total (``message_type`` None)
    #: first among its rows.
    agencies: tuple[AgencyKpi, ...] = field(default=())
    services: tuple[ServiceKpi, ...] = field(default=())

    def agency_totals(self) -> dict[str, AgencyKpi]:
        return {a.agency: a for a in self.agencies if a.message_type is None}

    def availability(self) -> dict[str, float | None]:
        """Agency -> availability over the period (what the metrics gauge shows)."""
        return {name: kpi.availability for name, kpi in self.agency_totals().items()}


async def compute_kpis(
    db: KpiDatabase,
    period: Period,
    *,
    now: datetime,
    agency: str | None = None,
    answer_timeout: timedelta = DEFAULT_ANSWER_TIMEOUT,
) -> KpiReport:
    """The KPIs of requests and service requests created in ``period``, judged at
    ``now``; ``agency`` narrows the agency rows (services are not per agency)."""
    require_aware("now", now)
    params: dict[str, datetime | str] = {
        "start": period.start,
        "end": period.end,
        "overdue_before": now - answer_timeout,
    }
    if agency is not None:
        params["agency"] = agency
    agency_rows = await db.fetch(agency_sql(db.dialect, by_agency=agency is not None), params)
    service_rows = await db.fetch(
        service_sql(db.dialect), {"start": period.start, "end": period.end}
    )
    return KpiReport(
        period=period,
        computed_at=now,
        answer_timeout=answer_timeout,
        agencies=tuple(_agency(row) for row in agency_rows),
        services=tuple(_service(row) for row in service_rows),
    )


def _int(row: Mapping[str, Any], name: str) -> int:
    return int(row[name] or 0)


def _seconds(row: Mapping[str, Any], name: str) -> float | None:
    value = row[name]
    return None if value is None else round(float(value), 3)


def _agency(row: Mapping[str, Any]) -> AgencyKpi:
    return AgencyKpi(
        agency=str(row["agency"]),
        message_type=row["message_type"],
        volume=_int(row, "volume"),
        answered=_int(row, "answered"),
        rejected=_int(row, "rejected"),
        unavailable=_int(row, "unavailable"),
        timed_out=_int(row, "timed_out"),
        dead_lettered=_int(row, "dead_lettered"),
        pending=_int(row, "pending"),
        answer_p50_s=_seconds(row, "answer_p50_s"),
        answer_p95_s=_seconds(row, "answer_p95_s"),
    )


def _service(row: Mapping[str, Any]) -> ServiceKpi:
    return ServiceKpi(
        service=str(row["service"]),
        volume=_int(row, "volume"),
        completed=_int(row, "completed"),
        partial=_int(row, "partial"),
        failed=_int(row, "failed"),
        timed_out=_int(row, "timed_out"),
        cancelled=_int(row, "cancelled"),
        pending=_int(row, "pending"),
        result_p50_s=_seconds(row, "result_p50_s"),
        result_p95_s=_seconds(row, "result_p95_s"),
    )
