"""Result callbacks: POST each final service request to its portal's ``callback_url``.

:class:`CallbackDispatcher` works the durable outbox
(:class:`~gateway.store.callback_outbox.CallbackOutbox`). Each
:meth:`~CallbackDispatcher.deliver_due` claims the callbacks due now (a claim counts the
attempt and leases it, so two gateway processes never make the same attempt) and POSTs
each one:

* the body is the request's REST representation, the JSON that
  ``GET /api/v1/service-requests/{id}`` answers (``render``, see
  :func:`gateway.api.views.callback_body`); its ``callback`` shows the attempt made;
* headers ``Content-Type: application/json``, ``X-Smevbus-Service-Request: <id>``,
  ``X-Smevbus-Attempt: <n>`` and, with a secret, ``X-Smevbus-Signature:
  sha256=<hex HMAC-SHA256 of the body>`` (:func:`signature`);
* a 2xx answer delivers it; any other status, a network error or a timeout schedules
  attempt ``n + 1`` after :meth:`RetryPolicy.delay` (doubling, capped), and the last
  allowed attempt failing gives it up as ``failed`` with the error. A URL whose host
  the operator no longer allows is given up without a POST;
* an address the SSRF guard refuses when the sender connects
  (:class:`~gateway.aggregator.callback_guard.CallbackRefused`: a name that now
  resolves inside the bus's network, say) fails that attempt with ``last_error``
  ``refused: ...`` and gives the callback up as ``failed`` at once: nothing was sent,
  and retrying would reach the same address or wait on the same operator decision.

A reply that makes its request final claims the first attempt in that same write, for
the process that saved it (:attr:`Aggregator.callback_lease
<gateway.aggregator.service.Aggregator.callback_lease>`), which hands the record to
:meth:`~CallbackDispatcher.deliver` at once: no claim statement, no outbox round to
wait for. The lease covers it as it covers any claim.

A callback is a notification about a result that is already saved: nothing here
touches a request's status or result, and no receiver failure raises out of
:meth:`~CallbackDispatcher.deliver_due`. Delivery is at least once: a process that dies
mid-POST leaves its lease to run out and the attempt is made again; receivers
deduplicate by ``X-Smevbus-Service-Request``.
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import random
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import timedelta
from typing import Any, Final, Protocol

import aiohttp
import httpx
import structlog
import yarl
from aiohttp.helpers import is_ip_address

from gateway.aggregator.callback_guard import CallbackGuard, CallbackRefused
from gateway.aggregator.callback_url import check_callback_url
from gateway.core import backoff
from gateway.core.clock import Clock
from gateway.core.errors import SchemaViolation
from gateway.ops import metrics
from gateway.ops.metrics import CallbackOutcome
from gateway.store.callback_outbox import CallbackOutbox
from gateway.store.service_requests import ServiceRequestRecord

__all__ = [
    "ATTEMPT_HEADER",
    "SERVICE_REQUEST_HEADER",
    "SIGNATURE_HEADER",
    "CallbackDispatcher",
    "CallbackSender",
    "HttpSender",
    "RetryPolicy",
    "signature",
]

log = structlog.get_logger(__name__)

SERVICE_REQUEST_HEADER: Final = "X-Smevbus-Service-Request"
ATTEMPT_HEADER: Final = "X-Smevbus-Attempt"
SIGNATURE_HEADER: Final = "X-Smevbus-Signature"
#: Longest error text kept in ``last_error``.
MAX_ERROR: Final = 500

#: The JSON body of a request's callback.
Render = Callable[[ServiceRequestRecord], bytes]


class CallbackSender(Protocol):
    """The one network call of callbacks."""

    async def post(self, url: str, body: bytes, headers: Mapping[str, str]) -> int:
        """POST ``body`` to ``url``; the HTTP status. Raises on a network error or timeout."""
        ...


class HttpSender:
    """:class:`CallbackSender` on aiohttp that connects only where ``guard`` allows.

    ``guard`` is the connector's resolver: every connection goes to addresses it has
    just resolved and checked, with the name kept for ``Host`` and TLS; an IP literal
    host is checked before the request. A refused address raises
    :class:`~gateway.aggregator.callback_guard.CallbackRefused` and nothing is sent.
    Redirects are not followed (the checked host is the one POSTed to), no proxy from
    the environment is used, no cookies are kept, and the answer's body is never read:
    only its status counts. ``timeout`` bounds the whole POST, resolution included, not
    just each network read, so a receiver that trickles bytes cannot outlast the lease.
    """

    def __init__(self, guard: CallbackGuard, *, timeout: float = 10.0) -> None:
        self._guard = guard
        self._timeout = timeout
        self._session: aiohttp.ClientSession | None = None

    async def post(self, url: str, body: bytes, headers: Mapping[str, str]) -> int:
        target = yarl.URL(url)
        async with asyncio.timeout(self._timeout):
            if target.raw_host is not None and is_ip_address(target.raw_host):
                # aiohttp connects to a literal without asking its resolver.
                await self._guard.check_literal(target.raw_host, target.port or 0)
            async with self._client().post(
                target, data=body, headers=dict(headers), allow_redirects=False
            ) as reply:
                return reply.status

    def _client(self) -> aiohttp.ClientSession:
        if self._session is None:  # made here: a session belongs to the running loop
            self._session = aiohttp.ClientSession(
                connector=aiohttp.TCPConnector(resolver=self._guard, use_dns_cache=False),
                timeout=aiohttp.ClientTimeout(total=None),  # asyncio.timeout bounds the POST
                cookie_jar=aiohttp.DummyCookieJar(),
            )
        return self._session

    async def aclose(self) -> None:
        if self._session is not None:
            await self._session.close()
            self._session = None


@dataclass(frozen=True)
class RetryPolicy:
    """How often and how patiently a callback is tried."""

    max_attempts: int = 8
    #: Wait after the first failed attempt; it doubles with each further one...
    first_delay: timedelta = timedelta(seconds=1)
    #: ... up to this.
    max_delay: timedelta = timedelta(minutes=5)
    #: How long a claimed attempt belongs to its process; longer than a POST can take.
    lease: timedelta = timedelta(seconds=60)
    #: Each wait is shortened at random by up to this fraction, so that the callbacks
    #: held up by a receiver that was down do not all come back at the same moment.
    jitter: float = 0.2

    def __post_init__(self) -> None:
        if self.max_attempts < 1:
            raise ValueError(f"max_attempts must be at least 1, got {self.max_attempts}")
        for name in ("first_delay", "max_delay", "lease"):
            if getattr(self, name) <= timedelta(0):
                raise ValueError(f"{name} must be positive")
        if not 0 <= self.jitter < 1:
            raise ValueError(f"jitter must be in [0, 1), got {self.jitter}")

    def delay(self, attempt: int, *, draw: Callable[[], float] = random.random) -> timedelta:
        """The wait after failed attempt ``attempt`` (1-based) before the next one:
        ``first_delay`` doubled per attempt, capped at ``max_delay``, less the jitter
        (``draw`` gives a number in [0, 1))."""
        schedule = backoff.exponential(
            self.first_delay.total_seconds(), self.max_delay.total_seconds()
        )
        seconds = backoff.delay(schedule, attempt)
        return timedelta(seconds=seconds * (1 - self.jitter * draw()))


def signature(body: bytes, secret: bytes) -> str:
    """The ``X-Smevbus-Signature`` value of ``body``: ``sha256=<hex HMAC-SHA256>``."""
    return "sha256=" + hmac.new(secret, body, hashlib.sha256).hexdigest()


class CallbackDispatcher:
    """Delivers due result callbacks from the outbox through ``sender``."""

    def __init__(
        self,
        outbox: CallbackOutbox,
        sender: CallbackSender,
        render: Render,
        *,
        clock: Clock,
        policy: RetryPolicy | None = None,
        secret: bytes | None = None,
        allowed_hosts: Sequence[str] = (),
        batch: int = 16,
    ) -> None:
        self.outbox = outbox
        self.sender = sender
        self.render = render
        self.clock = clock
        self.policy = policy or RetryPolicy()
        self._secret = secret
        self.allowed_hosts = tuple(allowed_hosts)
        self.batch = batch

    async def deliver_due(self) -> int:
        """Make one attempt of every callback due now; how many attempts were made.

        A batch of claimed callbacks is POSTed concurrently; batches follow until none
        is due. A failing receiver is recorded, never raised; only a failing store
        (claiming) raises, and the caller's loop tries again later.
        """
        made = 0
        while True:
            claimed = await self.outbox.claim_due(
                self.clock.now(), lease=self.policy.lease, limit=self.batch
            )
            await asyncio.gather(*(self._attempt(record) for record in claimed))
            made += len(claimed)
            if len(claimed) < self.batch:
                return made

    async def deliver(self, claimed: Sequence[ServiceRequestRecord]) -> None:
        """Make the attempt each of ``claimed`` shows, claimed already (by the write that
        made its request final: :attr:`Aggregator.callback_lease
        <gateway.aggregator.service.Aggregator.callback_lease>`)."""
        if len(claimed) == 1:  # in this task: not queued behind what the loop has ready
            await self._attempt(claimed[0])
            return
        await asyncio.gather(*(self._attempt(record) for record in claimed))

    def headers(self, record: ServiceRequestRecord, attempt: int, body: bytes) -> dict[str, str]:
        """The headers of attempt ``attempt`` to POST ``body`` for ``record``."""
        headers = {
            "Content-Type": "application/json",
            SERVICE_REQUEST_HEADER: str(record.id),
            ATTEMPT_HEADER: str(attempt),
        }
        if self._secret is not None:
            headers[SIGNATURE_HEADER] = signature(body, self._secret)
        return headers

    # --- one attempt ------------------------------------------------------------------

    async def _attempt(self, record: ServiceRequestRecord) -> None:
        try:
            await self._settle(record)
        except Exception:
            # The outbox could not record the outcome: the lease runs out and the
            # callback is attempted again (at least once, never lost).
            log.exception("callback_settle_failed", service_request_id=str(record.id))

    async def _settle(self, record: ServiceRequestRecord) -> None:
        callback = record.callback
        assert callback is not None, "the outbox claims only requests with a callback"
        attempt = callback.attempts
        fields: dict[str, Any] = {
            "service_request_id": str(record.id),
            "attempt": attempt,
            "host": _host(callback.url),  # never the whole URL: it may hold a token
        }
        refusal = self._refusal(callback.url)
        if refusal is not None:
            await self.outbox.fail(record.id, attempt, error=_clip(refusal), made=attempt - 1)
            metrics.count_callback(CallbackOutcome.FAILED)
            log.error("callback_failed", error=refusal, **fields)
            return
        if attempt > self.policy.max_attempts:
            # The last allowed attempt was cut off (its process died mid-POST): this
            # claim makes no POST and does not count.
            last = callback.last_error or "the last attempt was interrupted"
            await self.outbox.fail(record.id, attempt, error=last, made=attempt - 1)
            metrics.count_callback(CallbackOutcome.FAILED)
            log.error("callback_failed", error=last, **fields)
            return
        error, hopeless = await self._post(record, callback.url, attempt)
        now = self.clock.now()
        if error is None:
            await self.outbox.delivered(record.id, at=now)
            metrics.count_callback(CallbackOutcome.DELIVERED)
            log.info("callback_delivered", **fields)
        elif hopeless or attempt >= self.policy.max_attempts:
            await self.outbox.fail(record.id, attempt, error=error)
            metrics.count_callback(CallbackOutcome.FAILED)
            log.error("callback_failed", error=error, **fields)
        else:
            at = now + self.policy.delay(attempt)
            await self.outbox.retry(record.id, attempt, error=error, at=at)
            metrics.count_callback(CallbackOutcome.RETRY)
            log.warning(
                "callback_retry_scheduled", error=error, next_attempt_at=at.isoformat(), **fields
            )

    def _refusal(self, url: str) -> str | None:
        """Why ``url`` may not be called (any more), else ``None``."""
        try:
            check_callback_url(url, self.allowed_hosts)
        except SchemaViolation as exc:
            return exc.message
        return None

    async def _post(
        self, record: ServiceRequestRecord, url: str, attempt: int
    ) -> tuple[str | None, bool]:
        """POST the callback: (``None`` when answered 2xx, else what went wrong; whether
        trying again is hopeless)."""
        try:
            body = self.render(record)
            status = await self.sender.post(url, body, self.headers(record, attempt, body))
        except CallbackRefused as exc:  # the address is refused: it stays refused
            return _clip(f"refused: {exc}"), True
        except Exception as exc:  # network, timeout, or a sender's bug: all retried
            text = str(exc)
            return _clip(f"{type(exc).__name__}: {text}" if text else type(exc).__name__), False
        if 200 <= status < 300:
            return None, False
        return f"HTTP {status}", False


def _host(url: str) -> str | None:
    try:
        return httpx.URL(url).host
    except (httpx.InvalidURL, ValueError):
        return None


def _clip(text: str) -> str:
    return text if len(text) <= MAX_ERROR else text[: MAX_ERROR - 3] + "..."
