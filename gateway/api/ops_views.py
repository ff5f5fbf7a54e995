"""The ops console's views (:mod:`gateway.ops.console_api`) as the ops REST API shows
them (:mod:`gateway.wire.ops` models)."""

from __future__ import annotations

from gateway.ops.console_api import AgencyView, Overview, QueueView, Rate
from gateway.ops.deadletters import DeadLetterDetail, DeadLetterSummary, ReplayReport
from gateway.ops.kpi import AVAILABILITY_TARGET, AgencyKpi, KpiReport, ServiceKpi
from gateway.ops.tracing import transition_view
from gateway.wire.ops import (
    AgencyKpiOut,
    AgencyOut,
    DeadLetterDetailOut,
    DeadLetterOut,
    KpiOut,
    OverviewOut,
    QueueOut,
    RateOut,
    ReplayOut,
    ServiceKpiOut,
    Skipped,
)


def queue_out(view: QueueView) -> QueueOut:
    return QueueOut(
        name=view.name,
        direction=str(view.direction),
        participant=view.participant,
        ready=view.ready,
        unacked=view.unacked,
        consumers=view.consumers,
        oldest_age_s=view.oldest_age_s,
        dead_letters=view.dead_letters,
    )


def agency_out(view: AgencyView) -> AgencyOut:
    return AgencyOut(
        participant=view.participant,
        requests=view.requests,
        availability=view.availability,
        answer_p50_s=view.answer_p50_s,
        answer_p95_s=view.answer_p95_s,
        reachable=view.reachable,
        detail=view.detail,
    )


def rate_out(rate: Rate) -> RateOut:
    return RateOut(
        at=rate.at,
        window_s=rate.window_s,
        messages_per_s=rate.messages_per_s,
        faults_per_s=rate.faults_per_s,
        latency_p50_s=rate.latency_p50_s,
        latency_p95_s=rate.latency_p95_s,
    )


def overview_out(view: Overview) -> OverviewOut:
    return OverviewOut(
        rate=rate_out(view.rate),
        history=[rate_out(r) for r in view.history],
        queues=[queue_out(q) for q in view.queues],
        agencies=[agency_out(a) for a in view.agencies],
        availability_target=view.availability_target,
    )


def dead_letter_out(row: DeadLetterSummary) -> DeadLetterOut:
    return DeadLetterOut(
        direction=str(row.direction),
        participant=row.participant,
        message_id=row.message_id,
        reason=str(row.reason),
        detail=row.detail,
        message_type=row.message_type,
        sender=row.sender,
        journal_state=None if row.journal_state is None else str(row.journal_state),
        expires_at=row.expires_at,
    )


def dead_letter_detail_out(found: DeadLetterDetail) -> DeadLetterDetailOut:
    return DeadLetterDetailOut(
        summary=dead_letter_out(found.summary),
        headers=found.headers,
        xml=found.xml.decode("utf-8", errors="replace"),
        history=[transition_view(t) for t in found.history],
    )


def replay_out(report: ReplayReport) -> ReplayOut:
    return ReplayOut(
        replayed=list(report.replayed),
        skipped=[Skipped(message_id=mid, why=why) for mid, why in report.skipped],
    )


def agency_kpi_out(kpi: AgencyKpi) -> AgencyKpiOut:
    return AgencyKpiOut(
        agency=kpi.agency,
        message_type=kpi.message_type,
        volume=kpi.volume,
        answered=kpi.answered,
        rejected=kpi.rejected,
        unavailable=kpi.unavailable,
        timed_out=kpi.timed_out,
        dead_lettered=kpi.dead_lettered,
        pending=kpi.pending,
        availability=kpi.availability,
        meets_target=kpi.meets_target,
        rejection_rate=kpi.rejection_rate,
        answer_p50_s=kpi.answer_p50_s,
        answer_p95_s=kpi.answer_p95_s,
    )


def service_kpi_out(kpi: ServiceKpi) -> ServiceKpiOut:
    return ServiceKpiOut(
        service=kpi.service,
        volume=kpi.volume,
        completed=kpi.completed,
        partial=kpi.partial,
        failed=kpi.failed,
        timed_out=kpi.timed_out,
        cancelled=kpi.cancelled,
        pending=kpi.pending,
        result_p50_s=kpi.result_p50_s,
        result_p95_s=kpi.result_p95_s,
    )


def kpi_out(report: KpiReport) -> KpiOut:
    return KpiOut(
        period_start=report.period.start,
        period_end=report.period.end,
        computed_at=report.computed_at,
        answer_timeout_s=report.answer_timeout.total_seconds(),
        availability_target=AVAILABILITY_TARGET,
        agencies=[agency_kpi_out(a) for a in report.agencies],
        services=[service_kpi_out(s) for s in report.services],
    )
