"""The figures ``/metrics`` shows that are read, not counted: sampled in the background.

Three samplers, each a supervised task of the bus (:meth:`Samplers.spawn`) that runs a
round every ``interval`` seconds and keeps what it read last:

* ``queues``: :func:`gateway.ops.queues.read_queues` -> ``smevbus_queue_messages``,
  ``smevbus_queue_consumers``, ``smevbus_queue_oldest_message_age_seconds``, and the
  dead-letter queues by reason -> ``smevbus_dead_letters`` (a dead-letter queue is
  peeked only when its depth changed since the last round);
* ``availability``: :func:`gateway.ops.kpi.compute_kpis` over the last ``window``
  -> ``smevbus_agency_availability_ratio``;
* ``certificates``: each participant's certificate in the keys directory ->
  ``smevbus_certificate_expiry_timestamp_seconds``.

A scrape renders the gauges as they are: no I/O. A round that fails or outlasts
``timeout`` (broker or management API down, database slow or down) is logged, counted
in ``smevbus_sampler_failures_total`` and leaves the last figures in place. Samplers
never share a connection with a message: the broker calls are passive declares or
HTTP, the journal reads have their own pool (:func:`gateway.ops.kpi_queries.ops_database`).
"""

from __future__ import annotations

import asyncio
from collections import Counter
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from pathlib import Path

import structlog
from cryptography import x509

from gateway.core.clock import Clock
from gateway.crypto.devpki import cert_path
from gateway.ops.console_api import QueueView
from gateway.ops.kpi import Period, compute_kpis
from gateway.ops.kpi_queries import KpiDatabase
from gateway.ops.metrics import RECORDER, QueueStats, Recorder
from gateway.ops.queues import ManagementApi, read_queues
from gateway.supervisor import Supervisor
from gateway.transport.base import DeadLetterReason, Direction, Transport

log = structlog.get_logger(__name__)

Round = Callable[[], Awaitable[None]]

#: Dead letters a round looks at in one queue to tell their reasons.
DEAD_LETTER_SCAN = 10_000


@dataclass
class Samplers:
    """The background samplers of one bus and the figures each read last."""

    transport: Transport
    #: Participants whose queues are read.
    participants: tuple[str, ...]
    clock: Clock
    keys_dir: Path
    #: Whose certificates in ``keys_dir`` are watched (the participants and the bus).
    certificate_holders: tuple[str, ...]
    #: The journal's database for queue ages and availability; ``None``: not read.
    journal: KpiDatabase | None = None
    management: ManagementApi | None = None
    #: Seconds between rounds (the availability's own: a heavier query).
    interval: float = 15.0
    availability_interval: float = 60.0
    #: Longest a round may take before it counts as failed, seconds.
    timeout: float = 10.0
    window: timedelta = timedelta(hours=1)
    recorder: Recorder = RECORDER
    queues: tuple[QueueView, ...] = ()
    availability: dict[str, float | None] = field(default_factory=dict)
    certificates: dict[str, datetime] = field(default_factory=dict)
    #: Dead letters by reason per queue, with the depth they were counted at.
    dead_letters: dict[tuple[Direction, str], tuple[int, Counter[str]]] = field(
        default_factory=dict
    )

    def spawn(self, supervisor: Supervisor) -> None:
        for name, read in self._rounds().items():
            every = self.availability_interval if name == "availability" else self.interval
            supervisor.spawn(f"sampler.{name}", self._loop(name, read, every))

    def _rounds(self) -> dict[str, Round]:
        rounds: dict[str, Round] = {
            "queues": self.sample_queues,
            "certificates": self.sample_certificates,
        }
        if self.journal is not None:
            rounds["availability"] = self.sample_availability
        return rounds

    def _loop(self, name: str, read: Round, every: float) -> Round:
        async def loop() -> None:
            while True:
                await self.round(name, read)
                await asyncio.sleep(every)

        return loop

    async def round(self, name: str, read: Round) -> bool:
        """One round of sampler ``name``; False (logged and counted) if it failed."""
        try:
            async with asyncio.timeout(self.timeout):
                await read()
        except Exception as exc:
            log.warning("sampler_failed", sampler=name, error=repr(exc))
            self.recorder.count_sampler_failure(name)
            return False
        return True

    async def sample_all(self) -> bool:
        """One round of every sampler now (start-up, tests); whether all succeeded."""
        results = [await self.round(name, read) for name, read in self._rounds().items()]
        return all(results)

    # --- the rounds ------------------------------------------------------------------------

    async def sample_queues(self) -> None:
        views = await read_queues(
            self.transport,
            self.participants,
            now=self.clock.now(),
            journal=self.journal,
            management=self.management,
        )
        by_reason = {
            (v.direction, v.participant): await self._dead_letter_reasons(v) for v in views
        }
        self.queues = views
        self.recorder.set_queues(
            QueueStats(v.name, v.ready, v.unacked, v.consumers, v.oldest_age_s) for v in views
        )
        for participant in self.participants:
            total: Counter[str] = Counter({reason.value: 0 for reason in DeadLetterReason})
            for direction in Direction:
                total.update(by_reason[direction, participant])
            self.recorder.set_dead_letters(participant, dict(total))

    async def _dead_letter_reasons(self, view: QueueView) -> Counter[str]:
        key = (view.direction, view.participant)
        known = self.dead_letters.get(key)
        if known is not None and known[0] == view.dead_letters:
            return known[1]
        reasons: Counter[str] = Counter()
        if view.dead_letters:
            letters = await self.transport.dead_letters(
                view.direction, view.participant, limit=DEAD_LETTER_SCAN
            )
            reasons.update(letter.reason.value for letter in letters)
        self.dead_letters[key] = (view.dead_letters, reasons)
        return reasons

    async def sample_availability(self) -> None:
        assert self.journal is not None  # only scheduled with a journal
        now = self.clock.now()
        report = await compute_kpis(self.journal, Period(now - self.window, now), now=now)
        self.availability = report.availability()
        self.recorder.set_availability(self.availability)

    async def sample_certificates(self) -> None:
        found = await asyncio.to_thread(
            certificate_expiries, self.keys_dir, self.certificate_holders
        )
        self.certificates = found
        for participant, not_after in found.items():
            self.recorder.set_certificate_expiry(participant, not_after)


def certificate_expiries(keys_dir: Path, participants: Iterable[str]) -> dict[str, datetime]:
    """Participant -> when its certificate in ``keys_dir`` expires (those that have one)."""
    found = {}
    for participant in participants:
        path = cert_path(keys_dir, participant)
        if path.is_file():
            found[participant] = x509.load_pem_x509_certificate(
                path.read_bytes()
            ).not_valid_after_utc
    return found
