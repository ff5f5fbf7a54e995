"""An in-memory :class:`~gateway.ops.console_api.OpsConsole` with sample data, for the
tests of what sits on the console (``/ui``, the ops REST API, the CLI) and for trying
the dashboard without a bus.

:class:`FakeConsole` keeps its views as plain attributes a test may change, records every
action it is asked for (:attr:`FakeConsole.actions`), and behaves as the real console
does where a page can see it: a replayed dead letter leaves its queue and its trace gains
the ``DEAD_LETTERED -> QUEUED`` move with the operator as actor; a purge empties the
queue. :func:`sample_console` fills one with a small, plausible region.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from datetime import datetime, timedelta

from gateway.core.errors import NotFound
from gateway.core.lifecycle import MessageState
from gateway.ops.console_api import AgencyView, Overview, QueueView, Rate
from gateway.ops.deadletters import DeadLetterDetail, DeadLetterSummary, ReplayReport
from gateway.ops.kpi import KpiReport, Period
from gateway.store.records import TransitionRecord
from gateway.transport.base import DeadLetterReason, Direction
from gateway.wire.rest import MessageTrace, TransitionView

#: The reason a replay journals (as :mod:`gateway.router.deadletters` does).
REPLAY_REASON = "replayed by operator"


@dataclass(frozen=True, slots=True)
class Action:
    """One thing an operator asked the console to do."""

    kind: str  # "replay", "purge" or "check"
    operator: str | None
    direction: Direction | None
    participant: str
    message_ids: tuple[str, ...] | None = None


@dataclass
class FakeConsole:
    overview_view: Overview
    #: Traces by MessageID.
    traces: dict[str, MessageTrace] = field(default_factory=dict)
    #: Service request id -> the MessageIDs of its parts.
    service_requests: dict[str, tuple[str, ...]] = field(default_factory=dict)
    #: Dead letters by queue, oldest first.
    letters: dict[tuple[Direction, str], list[DeadLetterDetail]] = field(default_factory=dict)
    #: What :meth:`check_agency` finds, by participant (default: the agency as it is).
    checks: dict[str, AgencyView] = field(default_factory=dict)
    actions: list[Action] = field(default_factory=list)
    kpi_reports: list[KpiReport] = field(default_factory=list)

    async def overview(self) -> Overview:
        queues = await self.queues()
        return replace(self.overview_view, queues=queues)

    async def queues(self) -> tuple[QueueView, ...]:
        return tuple(
            replace(q, dead_letters=len(self.letters.get((q.direction, q.participant), ())))
            for q in self.overview_view.queues
        )

    async def agencies(self) -> tuple[AgencyView, ...]:
        return self.overview_view.agencies

    async def check_agency(self, participant: str) -> AgencyView:
        self.actions.append(Action("check", None, None, participant))
        agencies = {a.participant: a for a in self.overview_view.agencies}
        if participant not in agencies:
            raise NotFound(f"no agency {participant}", participant=participant)
        checked = self.checks.get(participant, agencies[participant])
        self.overview_view = replace(
            self.overview_view,
            agencies=tuple(
                checked if a.participant == participant else a for a in self.overview_view.agencies
            ),
        )
        return checked

    async def trace(self, ident: str) -> tuple[MessageTrace, ...]:
        ids = self.service_requests.get(ident, (ident,))
        return tuple(self.traces[i] for i in ids if i in self.traces)

    async def dead_letters(
        self, direction: Direction, participant: str, *, limit: int = 100
    ) -> list[DeadLetterSummary]:
        return [d.summary for d in self.letters.get((direction, participant), [])][:limit]

    async def dead_letter(
        self, direction: Direction, participant: str, message_id: str
    ) -> DeadLetterDetail:
        for detail in self.letters.get((direction, participant), []):
            if detail.summary.message_id == message_id:
                return detail
        raise NotFound(f"no dead letter {message_id}", message_id=message_id)

    async def replay(
        self,
        direction: Direction,
        participant: str,
        message_ids: list[str] | None,
        *,
        operator: str,
    ) -> ReplayReport:
        wanted = None if message_ids is None else tuple(message_ids)
        self.actions.append(Action("replay", operator, direction, participant, wanted))
        queue = self.letters.get((direction, participant), [])
        present = [d.summary.message_id for d in queue]
        replayed = tuple(mid for mid in present if wanted is None or mid in wanted)
        skipped = tuple(
            (mid, "not in the dead-letter queue") for mid in wanted or () if mid not in present
        )
        self.letters[(direction, participant)] = [
            d for d in queue if d.summary.message_id not in replayed
        ]
        for mid in replayed:
            self._moved(mid, MessageState.QUEUED, REPLAY_REASON, operator)
        return ReplayReport(replayed, skipped)

    async def purge(self, direction: Direction, participant: str, *, operator: str) -> int:
        self.actions.append(Action("purge", operator, direction, participant))
        purged = self.letters.pop((direction, participant), [])
        return len(purged)

    async def kpis(self, period: Period, *, agency: str | None = None) -> KpiReport:
        for report in self.kpi_reports:
            if report.period == period:
                return report
        raise NotFound("no KPI report for that period")

    def _moved(self, message_id: str, to: MessageState, reason: str, actor: str) -> None:
        trace = self.traces.get(message_id)
        if trace is None:
            return
        at = self.overview_view.rate.at
        move = TransitionView(
            from_state=trace.state, to_state=to.value, at=at, reason=reason, actor=actor
        )
        self.traces[message_id] = trace.model_copy(
            update={"state": to.value, "updated_at": at, "transitions": [*trace.transitions, move]}
        )


# --- sample data ---------------------------------------------------------------------

BIRTH = "urn://smevbus/types/zags/birth-record/1.0"
PASSPORT = "urn://smevbus/types/mvd/passport-validity/1.0"
#: The sample service request and its two parts (a ZAGS answer, an MVD dead letter).
SAMPLE_SERVICE_REQUEST = "6f1c2a1e-3b7d-4c59-9d0e-7c3f4d5e6a7b"
SAMPLE_ANSWERED = "0b5b7c8e-cf6a-11f0-8000-000000000001"
SAMPLE_DEAD = "0b5b7c8e-cf6a-11f0-8000-000000000002"
#: Business content with markup in a text value: a page must show it escaped.
SAMPLE_XML = (
    '<ns1:PassportValidityRequest xmlns:ns1="urn://smevbus/types/mvd/passport-validity/1.0">'
    "<ns1:Series>4509</ns1:Series><ns1:Number>123456</ns1:Number>"
    "<ns1:Note>&lt;script&gt;alert(1)&lt;/script&gt;</ns1:Note>"
    "</ns1:PassportValidityRequest>"
)


def _trace(
    message_id: str,
    recipient: str,
    message_type: str,
    moves: list[tuple[MessageState | None, MessageState, float, str | None, str | None]],
    start: datetime,
) -> MessageTrace:
    transitions = [
        TransitionView(
            from_state=None if frm is None else frm.value,
            to_state=to.value,
            at=start + timedelta(seconds=after),
            reason=reason,
            actor=actor,
        )
        for frm, to, after, reason, actor in moves
    ]
    return MessageTrace(
        message_id=message_id,
        kind="request",
        sender="PORTAL",
        recipient=recipient,
        message_type=message_type,
        in_reply_to=None,
        state=transitions[-1].to_state,
        created_at=start,
        updated_at=transitions[-1].at,
        expires_at=start + timedelta(hours=1),
        test_message=False,
        transitions=transitions,
        responses=[],
    )


def _history(now: datetime, steps: int = 12) -> tuple[Rate, ...]:
    window = 3600 / steps
    return tuple(
        Rate(
            at=now - timedelta(seconds=window * (steps - 1 - i)),
            window_s=window,
            messages_per_s=2.0 + (i % 4) * 0.5,
            faults_per_s=0.1 if i < steps - 3 else 0.6,
            latency_p50_s=None if i == 0 else 0.12 + 0.01 * i,
            latency_p95_s=None if i == 0 else 0.4 + 0.05 * i,
        )
        for i in range(steps)
    )


def sample_console(now: datetime) -> FakeConsole:
    """A console over a small region at ``now``: ZAGS well, MVD_MIGR under the 95 %
    target with one dead letter (:data:`SAMPLE_DEAD`, content :data:`SAMPLE_XML`), and
    a service request :data:`SAMPLE_SERVICE_REQUEST` whose two parts are traced."""
    history = _history(now)
    queues = (
        QueueView(Direction.REQUESTS, "ZAGS", 0, 0, 1, None, 0),
        QueueView(Direction.REQUESTS, "MVD_MIGR", 17, 2, 0, 312.0, 0),
        QueueView(Direction.RESPONSES, "PORTAL", 1, 0, 1, 0.4, 0),
    )
    agencies = (
        AgencyView("ZAGS", 1200, 0.992, 0.140, 0.610, True, "200 in 12 ms"),
        AgencyView("MVD_MIGR", 840, 0.812, 0.350, 4.200, False, "connection refused"),
    )
    overview = Overview(
        rate=history[-1],
        history=history,
        queues=queues,
        agencies=agencies,
        availability_target=0.95,
    )
    start = now - timedelta(minutes=6)
    s = MessageState
    answered = _trace(
        SAMPLE_ANSWERED,
        "ZAGS",
        BIRTH,
        [
            (None, s.ACCEPTED, 0.0, None, "PORTAL"),
            (s.ACCEPTED, s.QUEUED, 0.004, None, "router"),
            (s.QUEUED, s.DELIVERED, 0.020, None, "ZAGS"),
            (s.DELIVERED, s.RESPONDED, 0.310, None, "ZAGS"),
            (s.RESPONDED, s.RESPONSE_DELIVERED, 0.330, None, "PORTAL"),
        ],
        start,
    )
    dead = _trace(
        SAMPLE_DEAD,
        "MVD_MIGR",
        PASSPORT,
        [
            (None, s.ACCEPTED, 0.0, None, "PORTAL"),
            (s.ACCEPTED, s.QUEUED, 0.005, None, "router"),
            (s.QUEUED, s.DELIVERED, 0.030, None, "MVD_MIGR"),
            (s.DELIVERED, s.DEAD_LETTERED, 30.0, "delivery limit reached", "transport"),
        ],
        start,
    )
    summary = DeadLetterSummary(
        direction=Direction.REQUESTS,
        participant="MVD_MIGR",
        message_id=SAMPLE_DEAD,
        reason=DeadLetterReason.DELIVERY_LIMIT,
        detail="delivered 5 times without an ack",
        message_type=PASSPORT,
        sender="PORTAL",
        journal_state=s.DEAD_LETTERED,
        expires_at=dead.expires_at,
    )
    history_records = tuple(
        TransitionRecord(
            id=i,
            message_id=SAMPLE_DEAD,
            from_state=None if t.from_state is None else MessageState(t.from_state),
            to_state=MessageState(t.to_state),
            at=t.at,
            reason=t.reason,
            actor=t.actor,
        )
        for i, t in enumerate(dead.transitions, start=1)
    )
    letter = DeadLetterDetail(
        summary=summary,
        headers={"x-smevbus-sender": "PORTAL", "x-smevbus-type": PASSPORT},
        xml=SAMPLE_XML.encode(),
        history=history_records,
    )
    return FakeConsole(
        overview_view=overview,
        traces={SAMPLE_ANSWERED: answered, SAMPLE_DEAD: dead},
        service_requests={SAMPLE_SERVICE_REQUEST: (SAMPLE_ANSWERED, SAMPLE_DEAD)},
        letters={(Direction.REQUESTS, "MVD_MIGR"): [letter]},
        checks={"MVD_MIGR": replace(agencies[1], reachable=True, detail="200 in 48 ms")},
    )
