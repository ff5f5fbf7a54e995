"""The ops console's views (:mod:`gateway.ops.console_api`, :mod:`gateway.ops.kpi`,
:mod:`gateway.ops.deadletters`) as the ops REST API shows them (:mod:`gateway.wire.ops`).

The wire models carry the views' own field names, so most are read straight from the
views' attributes (:func:`wire`); the rest is said here.
"""

from __future__ import annotations

from typing import TypeVar

from pydantic import BaseModel

from gateway.ops.deadletters import DeadLetterDetail, ReplayReport
from gateway.ops.kpi import AVAILABILITY_TARGET, KpiReport
from gateway.ops.tracing import transition_view
from gateway.wire.ops import (
    AgencyKpiOut,
    DeadLetterDetailOut,
    DeadLetterOut,
    KpiOut,
    ReplayOut,
    ServiceKpiOut,
    Skipped,
)

M = TypeVar("M", bound=BaseModel)


def wire(model: type[M], view: object) -> M:
    """``view`` (a dataclass, nested ones included) as ``model``, field by attribute."""
    return model.model_validate(view, from_attributes=True)


def dead_letter_detail_out(found: DeadLetterDetail) -> DeadLetterDetailOut:
    return DeadLetterDetailOut(
        summary=wire(DeadLetterOut, found.summary),
        headers=found.headers,
        xml=found.xml.decode("utf-8", errors="replace"),
        history=[transition_view(t) for t in found.history],
    )


def replay_out(report: ReplayReport) -> ReplayOut:
    return ReplayOut(
        replayed=list(report.replayed),
        skipped=[Skipped(message_id=mid, why=why) for mid, why in report.skipped],
    )


def kpi_out(report: KpiReport) -> KpiOut:
    return KpiOut(
        period_start=report.period.start,
        period_end=report.period.end,
        computed_at=report.computed_at,
        answer_timeout_s=report.answer_timeout.total_seconds(),
        availability_target=AVAILABILITY_TARGET,
        agencies=[wire(AgencyKpiOut, a) for a in report.agencies],
        services=[wire(ServiceKpiOut, s) for s in report.services],
    )
