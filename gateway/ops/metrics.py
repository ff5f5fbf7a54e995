"""The bus's Prometheus metrics, defined once, and the helpers that record them.

Every metric the gateway and the adapters expose is declared in :class:`BusMetrics`;
``deploy/prometheus/alerts.yml`` and ``docs/operations.md`` use these names and a test
checks that they agree. The router, the aggregator and the adapters record through
the module-level helpers (:func:`observe_stage`, :func:`count_message`,
:func:`count_fault`, ...), which write to the process's :data:`METRICS`.

Recording never raises into the caller: a message must not fail because a metric
did (DESIGN.md section 5). A label value outside its enum (a stage, an outcome) is
dropped with one log line per metric rather than becoming a new series.

Multi-process mode (``smevbus serve --workers N``): :func:`enable_multiprocess` points
prometheus-client at a directory of per-process files *before* any series exists
(and sets ``PROMETHEUS_MULTIPROC_DIR`` so worker processes inherit it);
:func:`render` given that directory merges every process's files. Gauges there keep
the most recent value any process set, so whichever process samples the queues or
the journal last is what a scrape shows. prometheus-client exports no ``process_*``
metrics in that mode (they would be one worker's): they come from each single-process
target (adapters, a one-worker gateway).
"""

from __future__ import annotations

import functools
import os
import re
import shutil
import time
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum
from pathlib import Path
from typing import Final, ParamSpec

import structlog
from prometheus_client import (
    CONTENT_TYPE_LATEST,
    REGISTRY,
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    generate_latest,
    multiprocess,
    values,
)

log = structlog.get_logger(__name__)

P = ParamSpec("P")

#: The media type of :func:`render`'s output (Prometheus text format 0.0.4).
CONTENT_TYPE: Final = CONTENT_TYPE_LATEST
#: The environment variable prometheus-client reads in worker processes.
MULTIPROC_ENV: Final = "PROMETHEUS_MULTIPROC_DIR"


class Stage(StrEnum):
    """A timed step of a message's path (``smevbus_stage_duration_seconds``)."""

    PARSE = "parse"
    SCHEMA = "schema"
    VERIFY = "verify"
    JOURNAL = "journal"
    PUBLISH = "publish"
    DELIVER = "deliver"
    AGENCY_CALL = "agency_call"
    END_TO_END = "end_to_end"


class MessageOutcome(StrEnum):
    """What became of a message the bus was handed (``smevbus_messages_total``)."""

    #: Journaled and queued for its recipient.
    ACCEPTED = "accepted"
    #: A resubmission of a message already journaled: nothing changed.
    DUPLICATE = "duplicate"
    #: Refused with a fault (its code is counted in ``smevbus_faults_total``).
    REFUSED = "refused"
    #: Its end of life passed before delivery or answer.
    EXPIRED = "expired"
    #: Delivery limit reached or rejected by a consumer.
    DEAD_LETTERED = "dead_lettered"


class AgencyOutcome(StrEnum):
    """How an adapter's call of its agency ended (retries included); the journal KPIs
    class requests the same way and add what only the bus sees (dead letters)."""

    #: Answered with data (or an accepted "still processing").
    ANSWERED = "answered"
    #: Answered with a refusal (NO_DATA, ACCESS_DENIED, ...): the agency is up.
    REJECTED = "rejected"
    #: The agency's system could not be reached (answered ``AGENCY_UNAVAILABLE``).
    UNAVAILABLE = "unavailable"
    #: The last attempt ran into the call timeout (also answered ``AGENCY_UNAVAILABLE``).
    TIMED_OUT = "timed_out"


class CallbackOutcome(StrEnum):
    """One result-callback POST (``smevbus_callbacks_total``)."""

    DELIVERED = "delivered"
    #: This attempt failed; another is scheduled.
    RETRY = "retry"
    #: The last attempt failed (or the URL is no longer allowed): given up.
    FAILED = "failed"


class QueueState(StrEnum):
    READY = "ready"
    UNACKED = "unacked"


#: Upper bounds of the stage histogram: a parse takes well under a millisecond, an
#: agency call or a whole exchange can take minutes.
STAGE_BUCKETS: Final = (
    0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5,
    1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0, 300.0,
)  # fmt: skip
#: Upper bounds of the agency answer-time histogram.
ANSWER_BUCKETS: Final = (
    0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0, 300.0, 600.0,
)  # fmt: skip

# Free-form label values (participants, message types, fault codes, services) are
# bounded by the registry and the catalogue; this only keeps a broken caller from
# flooding the time-series database.
_MAX_LABEL = 1024
_FAULT_CODE = re.compile(r"[a-z][a-z0-9_]{0,63}")


@dataclass(frozen=True, slots=True)
class QueueStats:
    """One queue as the broker (or the journal) sees it now; ``None``: not known (that
    series is left as it was)."""

    queue: str
    ready: int
    unacked: int | None
    consumers: int | None
    #: Age of the oldest message waiting in it; 0 when it is empty.
    oldest_age_seconds: float | None = 0.0


class BusMetrics:
    """Every smevbus metric, registered on ``registry``.

    A process has one, :data:`METRICS` on prometheus-client's default registry (which
    also carries its ``process_*``, ``python_*`` collectors). Tests make their own
    on a fresh :class:`~prometheus_client.CollectorRegistry`.
    """

    def __init__(self, registry: CollectorRegistry | None = REGISTRY) -> None:
        self.registry = registry
        self.messages = Counter(
            "smevbus_messages",
            "Messages handed to the bus, by what became of them.",
            ["message_type", "sender", "recipient", "outcome"],
            registry=registry,
        )
        self.faults = Counter(
            "smevbus_faults",
            "Refusals and failures returned to a caller, by stable fault code.",
            ["code"],
            registry=registry,
        )
        self.stage_duration = Histogram(
            "smevbus_stage_duration_seconds",
            "Time spent in one step of a message's path.",
            ["stage"],
            buckets=STAGE_BUCKETS,
            registry=registry,
        )
        self.queue_messages = Gauge(
            "smevbus_queue_messages",
            "Messages in a bus queue: ready (waiting) or unacked (handed out, not acked).",
            ["queue", "state"],
            registry=registry,
            multiprocess_mode="mostrecent",
        )
        self.queue_consumers = Gauge(
            "smevbus_queue_consumers",
            "Consumers attached to a bus queue.",
            ["queue"],
            registry=registry,
            multiprocess_mode="mostrecent",
        )
        self.queue_oldest_age = Gauge(
            "smevbus_queue_oldest_message_age_seconds",
            "Age of the oldest message waiting in a bus queue (0 when empty).",
            ["queue"],
            registry=registry,
            multiprocess_mode="mostrecent",
        )
        self.dead_letters = Gauge(
            "smevbus_dead_letters",
            "Messages waiting in a participant's dead-letter queue, by reason.",
            ["participant", "reason"],
            registry=registry,
            multiprocess_mode="mostrecent",
        )
        self.agency_requests = Counter(
            "smevbus_agency_requests",
            "Requests an adapter put to its agency, by how the call ended.",
            ["agency", "outcome"],
            registry=registry,
        )
        self.agency_answer = Histogram(
            "smevbus_agency_answer_seconds",
            "Time an adapter took to get its agency's final answer (retries included).",
            ["agency", "outcome"],
            buckets=ANSWER_BUCKETS,
            registry=registry,
        )
        self.agency_availability = Gauge(
            "smevbus_agency_availability_ratio",
            "Share of an agency's settled requests answered (data or refusal) over the "
            "KPI window, from the journal.",
            ["agency"],
            registry=registry,
            multiprocess_mode="mostrecent",
        )
        self.service_requests = Counter(
            "smevbus_service_requests",
            "Service requests that became final, by status and why.",
            ["service", "status", "completed_by"],
            registry=registry,
        )
        self.callbacks = Counter(
            "smevbus_callbacks",
            "Result-callback POST attempts, by outcome.",
            ["outcome"],
            registry=registry,
        )
        self.sampler_failures = Counter(
            "smevbus_sampler_failures",
            "Rounds of a background sampler (queues, availability, certificates) that "
            "failed; its gauges keep the last good figures.",
            ["sampler"],
            registry=registry,
        )
        self.certificate_expiry = Gauge(
            "smevbus_certificate_expiry_timestamp_seconds",
            "When a participant's newest trusted certificate expires (Unix time).",
            ["participant"],
            registry=registry,
            multiprocess_mode="mostrecent",
        )


#: The metric names exposed, as Prometheus shows them (counters with ``_total``,
#: histograms as ``_bucket``/``_sum``/``_count``). Alerts and docs may use only these.
METRIC_NAMES: Final = frozenset(
    {
        "smevbus_messages_total",
        "smevbus_faults_total",
        "smevbus_stage_duration_seconds",
        "smevbus_queue_messages",
        "smevbus_queue_consumers",
        "smevbus_queue_oldest_message_age_seconds",
        "smevbus_dead_letters",
        "smevbus_agency_requests_total",
        "smevbus_agency_answer_seconds",
        "smevbus_agency_availability_ratio",
        "smevbus_service_requests_total",
        "smevbus_callbacks_total",
        "smevbus_certificate_expiry_timestamp_seconds",
        "smevbus_sampler_failures_total",
    }
)


# --- never raising -----------------------------------------------------------------

_reported: set[str] = set()


def _never_raises(record: Callable[P, None]) -> Callable[P, None]:
    """Swallow any error of ``record``, logging it once per helper."""

    @functools.wraps(record)
    def guarded(*args: P.args, **kwargs: P.kwargs) -> None:
        try:
            record(*args, **kwargs)
        except Exception as exc:
            _not_recorded(record.__name__, exc)

    return guarded


def _not_recorded(helper: str, exc: Exception) -> None:
    if helper not in _reported:
        _reported.add(helper)
        log.warning("metric_not_recorded", helper=helper, error=repr(exc))


def _label(value: str) -> str:
    text = str(value)
    if len(text) > _MAX_LABEL:
        raise ValueError(f"label value of {len(text)} characters")
    return text


# --- recording (the methods the bus calls through the module helpers) ---------------


class Recorder:
    """The recording helpers over one :class:`BusMetrics`; none of them raises."""

    def __init__(self, metrics: BusMetrics) -> None:
        self.metrics = metrics
        # The series the message path records into, looked up once each: ``labels()``
        # takes a lock and costs several times the observation itself.
        self._stages: dict[str, Histogram] = {}
        self._messages: dict[tuple[str, str, str, str], Counter] = {}

    def observe_stage(self, stage: Stage | str, seconds: float) -> None:
        # Never raises like the others, guarded inline: ~18 times a round trip, and the
        # wrapper's call and max() were a sixth of its Python calls.
        try:
            series = self._stages.get(stage)
            if series is None:
                series = self.metrics.stage_duration.labels(Stage(stage).value)
                self._stages[stage] = series
            series.observe(0.0 if seconds < 0.0 else seconds)  # max(seconds, 0.0)
        except Exception as exc:
            _not_recorded("observe_stage", exc)

    @_never_raises
    def count_message(
        self,
        message_type: str,
        sender: str,
        recipient: str,
        outcome: MessageOutcome | str,
    ) -> None:
        key = (message_type, sender, recipient, outcome)
        series = self._messages.get(key)
        if series is None:
            series = self.metrics.messages.labels(
                _label(message_type),
                _label(sender),
                _label(recipient),
                MessageOutcome(outcome).value,
            )
            self._messages[key] = series
        series.inc()

    @_never_raises
    def count_fault(self, code: str) -> None:
        if not _FAULT_CODE.fullmatch(code):
            raise ValueError(f"fault code {code!r} is not snake_case")
        self.metrics.faults.labels(code).inc()

    @_never_raises
    def count_agency_request(
        self, agency: str, outcome: AgencyOutcome | str, answer_seconds: float | None = None
    ) -> None:
        """One agency request ended; ``answer_seconds`` when it was answered."""
        labels = (_label(agency), AgencyOutcome(outcome).value)
        self.metrics.agency_requests.labels(*labels).inc()
        if answer_seconds is not None:
            self.metrics.agency_answer.labels(*labels).observe(max(answer_seconds, 0.0))

    @_never_raises
    def count_service_request(self, service: str, status: str, completed_by: str | None) -> None:
        self.metrics.service_requests.labels(
            _label(service), _label(status), _label(completed_by or "")
        ).inc()

    @_never_raises
    def count_callback(self, outcome: CallbackOutcome | str) -> None:
        self.metrics.callbacks.labels(CallbackOutcome(outcome).value).inc()

    @_never_raises
    def count_sampler_failure(self, sampler: str) -> None:
        self.metrics.sampler_failures.labels(_label(sampler)).inc()

    @_never_raises
    def set_queues(self, stats: Iterable[QueueStats]) -> None:
        """The queues' figures as sampled now (one call per sampling round)."""
        m = self.metrics
        for s in stats:
            queue = _label(s.queue)
            m.queue_messages.labels(queue, QueueState.READY.value).set(s.ready)
            if s.unacked is not None:
                m.queue_messages.labels(queue, QueueState.UNACKED.value).set(s.unacked)
            if s.consumers is not None:
                m.queue_consumers.labels(queue).set(s.consumers)
            if s.oldest_age_seconds is not None:
                m.queue_oldest_age.labels(queue).set(max(s.oldest_age_seconds, 0.0))

    @_never_raises
    def set_dead_letters(self, participant: str, counts: dict[str, int]) -> None:
        """A participant's dead-letter queue by reason. Pass every reason the bus
        knows (zero included), so a queue that starts to fill is a rise, not a new
        series that ``delta()`` cannot see."""
        for reason, count in counts.items():
            self.metrics.dead_letters.labels(_label(participant), _label(reason)).set(count)

    @_never_raises
    def set_availability(self, ratios: dict[str, float | None]) -> None:
        """Agency availability over the KPI window; ``None`` (no settled requests in
        the window) leaves that agency's last value alone."""
        for agency, ratio in ratios.items():
            if ratio is not None:
                self.metrics.agency_availability.labels(_label(agency)).set(ratio)

    @_never_raises
    def set_certificate_expiry(self, participant: str, not_after: datetime) -> None:
        self.metrics.certificate_expiry.labels(_label(participant)).set(not_after.timestamp())

    @contextmanager
    def timed(self, stage: Stage | str) -> Iterator[None]:
        """Observe the time the ``with`` block takes as ``stage``, even if it raises."""
        start = time.perf_counter()
        try:
            yield
        finally:
            self.observe_stage(stage, time.perf_counter() - start)


# --- the process's metrics -----------------------------------------------------------

#: This process's metrics, on prometheus-client's default registry.
METRICS: Final = BusMetrics()
#: The recording helpers on :data:`METRICS`.
RECORDER: Final = Recorder(METRICS)

observe_stage = RECORDER.observe_stage
count_message = RECORDER.count_message
count_fault = RECORDER.count_fault
count_agency_request = RECORDER.count_agency_request
count_service_request = RECORDER.count_service_request
count_callback = RECORDER.count_callback
count_sampler_failure = RECORDER.count_sampler_failure
set_queues = RECORDER.set_queues
set_dead_letters = RECORDER.set_dead_letters
set_availability = RECORDER.set_availability
set_certificate_expiry = RECORDER.set_certificate_expiry
timed = RECORDER.timed


# --- multi-process mode and exposition ------------------------------------------------


def prepare_multiprocess_dir(directory: Path) -> Path:
    """Empty (or create) ``directory`` for a new set of worker processes.

    Call once in the parent before it starts the workers: files of processes from an
    earlier run would otherwise be summed into the new counters.
    """
    if directory.exists():
        for child in directory.iterdir():
            if child.is_dir():
                shutil.rmtree(child)
            else:
                child.unlink()
    directory.mkdir(parents=True, exist_ok=True)
    return directory


def enable_multiprocess(directory: Path) -> None:
    """Record this process's metrics into ``directory`` (and have child processes do
    the same through ``PROMETHEUS_MULTIPROC_DIR``). Call before the first metric is
    recorded: a series created before stays in this process's memory."""
    os.environ[MULTIPROC_ENV] = str(directory)
    values.ValueClass = values.MultiProcessValue()  # type: ignore[no-untyped-call]


def multiprocess_dir() -> Path | None:
    """The directory this process records into, if it is one of several (the
    environment prometheus-client itself reads)."""
    directory = os.environ.get(MULTIPROC_ENV)
    return Path(directory) if directory else None


def mark_process_dead(pid: int, directory: Path) -> None:
    """Drop a finished worker's live gauges (uvicorn's parent calls this on exit)."""
    multiprocess.mark_process_dead(pid, str(directory))  # type: ignore[no-untyped-call]


def render(
    registry: CollectorRegistry | None = REGISTRY, *, multiprocess_dir: Path | None = None
) -> bytes:
    """The text exposition of ``registry``, or of every process writing to
    ``multiprocess_dir`` when it is given."""
    if multiprocess_dir is not None:
        merged = CollectorRegistry()
        multiprocess.MultiProcessCollector(merged, path=str(multiprocess_dir))  # type: ignore[no-untyped-call]
        return generate_latest(merged)
    return generate_latest(registry if registry is not None else REGISTRY)
