"""One adapter as a process: take its requests from the bus, answer, until stopped.

Push (the default): consume ``requests.<participant>`` straight from RabbitMQ
(``SMEVBUS_AMQP_URL``) with :class:`~adapters.sdk.push.PushSource`. Pull: SOAP
``GetRequest``/``Ack`` on the gateway's ``/ws``. Either way the answers go to the
gateway's ``/ws`` by SOAP ``SendResponse``, so the bus journals and verifies them.
"""

from __future__ import annotations

import asyncio
import signal
import ssl
from contextlib import AsyncExitStack

import structlog

from adapters.catalog import ADAPTERS, close_quietly
from adapters.sdk import AdapterRunner, PollPolicy
from adapters.sdk.push import PushSource
from adapters.sdk.runner import BUS_UNREACHABLE_ATTEMPTS
from gateway.bus import open_transport
from gateway.client.http import SoapHttp, tls_context
from gateway.client.participant import ParticipantClient
from gateway.config import Settings
from gateway.core.clock import SystemClock
from gateway.crypto.keystore import load_signer, load_verifier

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
) -> None:
    """Run adapter ``name`` (push over AMQP, or ``pull`` by SOAP) until SIGTERM/SIGINT.

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
        client = ParticipantClient(
            signer=load_signer(settings.keys_dir, spec.mnemonic, settings.signature_profile),
            verifier=verifier,
            clock=clock,
            call=call,
        )
        # ``workers`` runners answer requests side by side, each one at a time: an
        # agency that takes 200 ms per answer serves 5 requests/s per worker.
        runners: list[AdapterRunner] = []
        if pull:
            poll = PollPolicy(interval=min(PollPolicy.interval, poll_max), max_interval=poll_max)
            for _ in range(workers):
                runners.append(AdapterRunner(adapter, client, poll=poll, participant=spec.mnemonic))
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
                        # Hold a delivery while the gateway restarts rather than spend
                        # its delivery limit on requeues.
                        bus_unreachable_attempts=BUS_UNREACHABLE_ATTEMPTS,
                    )
                )

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
        )
        try:
            await asyncio.gather(*(runner.run_forever() for runner in runners))
        finally:
            log.info("adapter_stopped", adapter=name)
