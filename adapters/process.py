"""One adapter as a process: take its requests from the bus, answer, until stopped.

Push (the default): consume ``requests.<participant>`` straight from RabbitMQ
(``SMEVBUS_AMQP_URL``) with :class:`~adapters.sdk.push.PushSource`. Pull: SOAP
``GetRequest``/``Ack`` on the gateway's ``/ws``. Either way the answers go to the
gateway's ``/ws`` by SOAP ``SendResponse``, so the bus journals and verifies them.
"""

from __future__ import annotations

import asyncio
import signal
from contextlib import AsyncExitStack

import httpx
import structlog

from adapters.catalog import ADAPTERS, close_quietly
from adapters.sdk import AdapterRunner, PollPolicy
from adapters.sdk.push import PushSource
from adapters.sdk.runner import BUS_UNREACHABLE_ATTEMPTS
from gateway.assembly import open_transport
from gateway.client.http import http_call
from gateway.client.participant import ParticipantClient
from gateway.config import Settings
from gateway.core.clock import SystemClock
from gateway.crypto.keystore import load_signer, load_verifier

log = structlog.get_logger(__name__)

#: In push mode ``next`` itself waits for a delivery: the loop only pauses briefly.
PUSH_POLL = PollPolicy(interval=0.05, max_interval=0.5)


async def run_adapter(
    name: str,
    settings: Settings,
    gateway_url: str,
    agency_url: str,
    *,
    pull: bool = False,
    poll_max: float = PollPolicy.max_interval,
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
        http = await stack.enter_async_context(httpx.AsyncClient(timeout=60))
        client = ParticipantClient(
            signer=load_signer(settings.keys_dir, spec.mnemonic, settings.signature_profile),
            verifier=verifier,
            clock=clock,
            call=http_call(http, gateway_url.rstrip("/") + "/ws"),
        )
        if pull:
            poll = PollPolicy(interval=min(PollPolicy.interval, poll_max), max_interval=poll_max)
            runner = AdapterRunner(adapter, client, poll=poll, participant=spec.mnemonic)
        else:
            transport = await open_transport(
                settings.model_copy(update={"transport": "amqp"}), clock
            )
            stack.push_async_callback(transport.close)
            await transport.declare([spec.mnemonic])
            source = PushSource(transport, spec.mnemonic, verifier, clock=clock)
            stack.push_async_callback(source.close)
            await source.start()
            runner = AdapterRunner(
                adapter,
                client,
                source=source,
                poll=PUSH_POLL,
                participant=spec.mnemonic,
                # Hold a delivery while the gateway restarts rather than spend its
                # delivery limit on requeues.
                bus_unreachable_attempts=BUS_UNREACHABLE_ATTEMPTS,
            )
        loop = asyncio.get_running_loop()
        for signum in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(signum, runner.stop)
        log.info(
            "adapter_started",
            adapter=name,
            participant=spec.mnemonic,
            gateway=gateway_url,
            mode="pull" if pull else "push",
        )
        try:
            await runner.run_forever()
        finally:
            log.info("adapter_stopped", adapter=name)
