"""One adapter as a process: take its requests from the bus, answer, until stopped.

Push (the default): consume ``requests.<participant>`` straight from RabbitMQ
(``SMEVBUS_AMQP_URL``) with :class:`~adapters.sdk.push.PushSource`. Pull: SOAP
``GetRequest``/``Ack`` on the gateway's ``/ws``. Either way the answers go to the
gateway's ``/ws`` by SOAP ``SendResponse``, so the bus journals and verifies them.

Next to it, on ``ops_port``, the process serves ``/health``, ``/ready`` (broker in push
mode, gateway, keys, registry) and its ``/metrics`` (:mod:`adapters.ops_server`).
"""

from __future__ import annotations

import asyncio
import signal
import ssl
from contextlib import AsyncExitStack

import aiohttp
import structlog

from adapters.catalog import ADAPTERS, close_quietly
from adapters.ops_server import Check, OpsServer
from adapters.sdk import AdapterRunner, PollPolicy
from adapters.sdk.metrics import PrometheusMetrics
from adapters.sdk.push import PushSource
from adapters.sdk.runner import BUS_UNREACHABLE_ATTEMPTS
from gateway.bus import load_registry
from gateway.client.http import SoapHttp, tls_context
from gateway.client.participant import ParticipantClient
from gateway.config import Settings
from gateway.core.clock import Clock, SystemClock
from gateway.crypto.certificates import validity_problem
from gateway.crypto.keystore import load_signer, load_verifier
from gateway.crypto.xmldsig import XmlSigner
from gateway.transport.base import Direction, Transport
from gateway.transport.opening import open_transport

log = structlog.get_logger(__name__)

#: In push mode ``next`` itself waits (a second) for a delivery, so the loop need not
#: pause after an empty round: a pause would leave a delivery that reaches this worker
#: meanwhile waiting in its buffer. (Consuming fails only after the transport has ridden
#: out a reconnect, so failures do not spin.)
PUSH_POLL = PollPolicy(interval=0.001, max_interval=0.001)


def _gateway_tls(settings: Settings) -> ssl.SSLContext | None:
    """The TLS context for an ``https`` gateway, from ``SMEVBUS_CLIENT_TLS_*``."""
    if settings.client_tls_ca_file is None and settings.client_tls_cert_file is None:
        return None
    return tls_context(
        ca_file=settings.client_tls_ca_file,
        cert_file=settings.client_tls_cert_file,
        key_file=settings.client_tls_key_file,
    )


async def run_adapter(
    name: str,
    settings: Settings,
    gateway_url: str,
    agency_url: str,
    *,
    pull: bool = False,
    poll_max: float = PollPolicy.max_interval,
    workers: int = 1,
    ops_port: int | None = None,
) -> None:
    """Run adapter ``name`` (push over AMQP, or ``pull`` by SOAP) until SIGTERM/SIGINT,
    with its ``/health``, ``/ready`` and ``/metrics`` on ``ops_port`` (default
    ``settings.adapter_ops_port``; 0: none).

    The request in hand is finished before the process exits; in push mode the
    deliveries not yet acked go back to the queue.
    """
    spec = ADAPTERS[name]
    clock = SystemClock()
    verifier = load_verifier(settings.keys_dir, clock)
    adapter, closer = spec.build(agency_url)
    async with AsyncExitStack() as stack:
        stack.push_async_callback(close_quietly, closer)
        call = await stack.enter_async_context(
            SoapHttp(gateway_url.rstrip("/") + "/ws", tls=_gateway_tls(settings))
        )
        signer = load_signer(settings.keys_dir, spec.mnemonic, settings.signature_profile)
        client = ParticipantClient(signer=signer, verifier=verifier, clock=clock, call=call)
        metrics = PrometheusMetrics(spec.mnemonic)
        transport: Transport | None = None
        # ``workers`` runners answer requests side by side, each one at a time: an
        # agency that takes 200 ms per answer serves 5 requests/s per worker.
        runners: list[AdapterRunner] = []
        if pull:
            poll = PollPolicy(interval=min(PollPolicy.interval, poll_max), max_interval=poll_max)
            for _ in range(workers):
                runners.append(
                    AdapterRunner(
                        adapter, client, poll=poll, participant=spec.mnemonic, metrics=metrics
                    )
                )
        else:
            transport = await open_transport(
                settings.model_copy(update={"transport": "amqp"}), clock
            )
            stack.push_async_callback(transport.close)
            await transport.declare([spec.mnemonic])
            for _ in range(workers):
                source = PushSource(transport, spec.mnemonic, verifier, clock=clock)
                stack.push_async_callback(source.close)
                await source.start()
                runners.append(
                    AdapterRunner(
                        adapter,
                        client,
                        source=source,
                        poll=PUSH_POLL,
                        participant=spec.mnemonic,
                        metrics=metrics,
                        # Hold a delivery while the gateway restarts rather than spend
                        # its delivery limit on requeues.
                        bus_unreachable_attempts=BUS_UNREACHABLE_ATTEMPTS,
                    )
                )

        port = settings.adapter_ops_port if ops_port is None else ops_port
        if port:
            checks = readiness_checks(
                settings,
                spec.mnemonic,
                runners[0].message_types,
                signer=signer,
                clock=clock,
                gateway_url=gateway_url,
                transport=transport,
            )
            ops = OpsServer(
                checks,
                tokens=settings.ops_tokens,
                public=settings.metrics_public,
                host=settings.http_host,  # 0.0.0.0 in the container image
                port=port,
            )
            await ops.start()
            stack.push_async_callback(ops.close)

        def stop() -> None:
            for runner in runners:
                runner.stop()

        loop = asyncio.get_running_loop()
        for signum in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(signum, stop)
        log.info(
            "adapter_started",
            adapter=name,
            participant=spec.mnemonic,
            gateway=gateway_url,
            mode="pull" if pull else "push",
            workers=workers,
            ops_port=port or None,
        )
        try:
            await asyncio.gather(*(runner.run_forever() for runner in runners))
        finally:
            log.info("adapter_stopped", adapter=name)


def readiness_checks(
    settings: Settings,
    participant: str,
    message_types: tuple[str, ...],
    *,
    signer: XmlSigner,
    clock: Clock,
    gateway_url: str,
    transport: Transport | None,
) -> dict[str, Check]:
    """What an adapter process needs to work: its key valid now, the registry naming it
    as the provider of its message types, the gateway answering, and in push mode
    the broker."""

    async def keys() -> None:
        problem = validity_problem(signer.certificate, clock.now())
        if problem is not None:
            raise RuntimeError(f"{participant}: {problem}")

    async def registry() -> None:
        registered = load_registry(settings)
        if participant not in registered.mnemonics:
            raise RuntimeError(f"{participant} is not in {settings.registry_file}")
        provided = registered.get(participant).provides
        missing = sorted(set(message_types) - provided)
        if missing:
            raise RuntimeError(f"{participant} is not registered as provider of {missing}")

    async def gateway() -> None:
        async with (
            aiohttp.ClientSession() as session,
            session.get(
                gateway_url.rstrip("/") + "/health", ssl=_gateway_tls(settings) or True
            ) as response,
        ):
            if response.status != 200:
                raise RuntimeError(f"{gateway_url}/health answered {response.status}")

    checks: dict[str, Check] = {"keys": keys, "registry": registry, "gateway": gateway}
    if transport is not None:
        broker = transport

        async def broker_check() -> None:
            await broker.depth(Direction.REQUESTS, participant)

        checks["broker"] = broker_check
    return checks
