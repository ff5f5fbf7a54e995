"""Metrics hooks of an adapter runner: a small protocol, a no-op, a recording one and
the Prometheus one (:class:`PrometheusMetrics`, what ``smevbus adapter`` uses).

Plug anything else in by implementing :class:`AdapterMetrics`. The runner calls the
hooks through :func:`safely`, so a failing metrics backend is logged and never loses,
delays or fails a request.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Protocol

import structlog

from gateway.ops import metrics as bus_metrics
from gateway.ops.metrics import AgencyOutcome, Stage

log = structlog.get_logger(__name__)


class AdapterMetrics(Protocol):
    def handled(self, message_type: str, outcome: str) -> None:
        """A request was processed; ``outcome`` is an ``OutcomeKind`` value."""
        ...

    def rejected(self, message_type: str, code: str) -> None:
        """A rejection with ``code`` was sent."""
        ...

    def failed(self, message_type: str, reason: str) -> None:
        """Something went wrong that an operator should look at (adapter bug, bus refusal)."""
        ...

    def retried(self, message_type: str) -> None:
        """The agency call is retried after the agency was unavailable."""
        ...

    def observe_latency(self, message_type: str, seconds: float) -> None:
        """Time from taking the request to settling it."""
        ...

    def agency_call(self, message_type: str, seconds: float) -> None:
        """One attempt at the agency's system took ``seconds`` (however it ended)."""
        ...

    def agency_answered(self, message_type: str, outcome: AgencyOutcome, seconds: float) -> None:
        """The agency's final answer (or giving up on it), retries included."""
        ...


class NoMetrics:
    """The default: records nothing."""

    def handled(self, message_type: str, outcome: str) -> None:
        pass

    def rejected(self, message_type: str, code: str) -> None:
        pass

    def failed(self, message_type: str, reason: str) -> None:
        pass

    def retried(self, message_type: str) -> None:
        pass

    def observe_latency(self, message_type: str, seconds: float) -> None:
        pass

    def agency_call(self, message_type: str, seconds: float) -> None:
        pass

    def agency_answered(self, message_type: str, outcome: AgencyOutcome, seconds: float) -> None:
        pass


@dataclass
class RecordingMetrics:
    """Counts every hook call in memory: for tests and for a quick look in the demo."""

    handled_by: Counter[tuple[str, str]] = field(default_factory=Counter)
    rejected_by: Counter[tuple[str, str]] = field(default_factory=Counter)
    failed_by: Counter[tuple[str, str]] = field(default_factory=Counter)
    retried_by: Counter[str] = field(default_factory=Counter)
    latencies: list[tuple[str, float]] = field(default_factory=list)
    calls: list[tuple[str, float]] = field(default_factory=list)
    answers: list[tuple[str, AgencyOutcome, float]] = field(default_factory=list)

    def handled(self, message_type: str, outcome: str) -> None:
        self.handled_by[message_type, outcome] += 1

    def rejected(self, message_type: str, code: str) -> None:
        self.rejected_by[message_type, code] += 1

    def failed(self, message_type: str, reason: str) -> None:
        self.failed_by[message_type, reason] += 1

    def retried(self, message_type: str) -> None:
        self.retried_by[message_type] += 1

    def observe_latency(self, message_type: str, seconds: float) -> None:
        self.latencies.append((message_type, seconds))

    def agency_call(self, message_type: str, seconds: float) -> None:
        self.calls.append((message_type, seconds))

    def agency_answered(self, message_type: str, outcome: AgencyOutcome, seconds: float) -> None:
        self.answers.append((message_type, outcome, seconds))


class PrometheusMetrics(NoMetrics):
    """The process's Prometheus metrics (:mod:`gateway.ops.metrics`) for the adapter of
    ``agency``: ``smevbus_agency_requests_total`` and ``smevbus_agency_answer_seconds``
    {agency, outcome} (answer time for answers and refusals only), and each attempt as
    ``smevbus_stage_duration_seconds{stage="agency_call"}``."""

    def __init__(self, agency: str) -> None:
        self.agency = agency

    def agency_call(self, message_type: str, seconds: float) -> None:
        bus_metrics.observe_stage(Stage.AGENCY_CALL, seconds)

    def agency_answered(self, message_type: str, outcome: AgencyOutcome, seconds: float) -> None:
        answered = outcome in (AgencyOutcome.ANSWERED, AgencyOutcome.REJECTED)
        bus_metrics.count_agency_request(self.agency, outcome, seconds if answered else None)


def safely(hook: Callable[..., None], *args: object) -> None:
    """Call a metrics hook; log and swallow whatever it raises."""
    try:
        hook(*args)
    except Exception:
        log.exception("metrics_hook_failed", hook=getattr(hook, "__name__", repr(hook)))
