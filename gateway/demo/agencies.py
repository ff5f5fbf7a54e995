"""The mock agencies and their adapters, in-process, for ``smevbus demo``.

Each mock is the same FastAPI app the integration tests and docker-compose run as a
process, served here by uvicorn on a free 127.0.0.1 port in a background thread (zeep
fetches the ZAGS WSDL synchronously when the adapter is built, which would block a mock
sharing the demo's event loop).
The adapters are the real ones; their bus client calls ``Router.handle`` directly.
"""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass

import uvicorn
from fastapi import FastAPI

from adapters.catalog import ADAPTERS, close_quietly
from adapters.fns.mock_service import create_mock_fns
from adapters.mvd_migration.mock_service import create_mock_mvd
from adapters.sdk import AdapterRunner
from adapters.zags.mock_service import create_mock_zags
from gateway.client.participant import ParticipantClient


@dataclass(frozen=True)
class MockAgency:
    name: str
    url: str


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


@contextmanager
def _serving(app: FastAPI) -> Iterator[int]:
    port = _free_port()
    server = uvicorn.Server(
        uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning", lifespan="off")
    )
    thread = threading.Thread(target=server.run, name=f"mock-{port}", daemon=True)
    thread.start()
    deadline = time.monotonic() + 30
    while not server.started:  # bounded wait for the socket to listen
        if time.monotonic() > deadline or not thread.is_alive():
            raise RuntimeError(f"mock agency on port {port} did not start")
        time.sleep(0.01)
    try:
        yield port
    finally:
        server.should_exit = True
        thread.join(timeout=10)


@contextmanager
def mock_agencies() -> Iterator[dict[str, MockAgency]]:
    """Mock ZAGS (SOAP), MVD and FNS (XML over HTTP), keyed by adapter name."""
    with (
        _serving(create_mock_zags()) as zags,
        _serving(create_mock_mvd()) as mvd,
        _serving(create_mock_fns()) as fns,
    ):
        yield {
            "zags": MockAgency("ZAGS registry (SOAP)", f"http://127.0.0.1:{zags}/zags?wsdl"),
            "mvd_migration": MockAgency("MVD migration (XML/HTTP)", f"http://127.0.0.1:{mvd}"),
            "fns": MockAgency("FNS INN (XML/HTTP)", f"http://127.0.0.1:{fns}"),
        }


class DemoAdapters:
    """The real adapters for the mocks, each with its participant's bus client."""

    def __init__(
        self, agencies: dict[str, MockAgency], clients: dict[str, ParticipantClient]
    ) -> None:
        self.runners: dict[str, AdapterRunner] = {}
        self._closers: list[Callable[[], object]] = []
        for name, agency in agencies.items():
            spec = ADAPTERS[name]
            adapter, closer = spec.build(agency.url)
            self._closers.append(closer)
            self.runners[name] = AdapterRunner(
                adapter, clients[spec.mnemonic], participant=spec.mnemonic
            )

    async def aclose(self) -> None:
        for closer in self._closers:
            await close_quietly(closer)
