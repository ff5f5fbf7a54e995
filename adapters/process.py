"""One adapter as a process: pull requests from the gateway's /ws, answer, until stopped."""

from __future__ import annotations

import asyncio
import signal

import httpx
import structlog

from adapters.catalog import ADAPTERS, close_quietly
from adapters.sdk import AdapterRunner
from gateway.client.http import http_call
from gateway.client.participant import ParticipantClient
from gateway.config import Settings
from gateway.core.clock import SystemClock
from gateway.crypto.keystore import load_signer, load_verifier

log = structlog.get_logger(__name__)


async def run_adapter(name: str, settings: Settings, gateway_url: str, agency_url: str) -> None:
    """Run adapter ``name`` in pull mode (SOAP GetRequest/SendResponse/Ack) until SIGTERM/SIGINT.

    The request in hand is finished before the process exits.
    """
    spec = ADAPTERS[name]
    clock = SystemClock()
    adapter, closer = spec.build(agency_url)
    async with httpx.AsyncClient(timeout=60) as http:
        client = ParticipantClient(
            signer=load_signer(settings.keys_dir, spec.mnemonic, settings.signature_profile),
            verifier=load_verifier(settings.keys_dir, clock),
            clock=clock,
            call=http_call(http, gateway_url.rstrip("/") + "/ws"),
        )
        runner = AdapterRunner(adapter, client, participant=spec.mnemonic)
        loop = asyncio.get_running_loop()
        for signum in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(signum, runner.stop)
        log.info("adapter_started", adapter=name, participant=spec.mnemonic, gateway=gateway_url)
        try:
            await runner.run_forever()
        finally:
            await close_quietly(closer)
            log.info("adapter_stopped", adapter=name)
