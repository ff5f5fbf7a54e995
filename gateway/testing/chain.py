"""The whole bus as separate processes, as docker-compose runs it, for end-to-end tests.

``smevbus serve`` on its own RabbitMQ vhost and PostgreSQL database, the mock agencies,
and their adapters: ZAGS with ``--pull`` (SOAP polling of /ws), MVD and FNS in push
mode (consuming their queues on the gateway's vhost).
"""

from __future__ import annotations

import json
import sys
from collections.abc import Callable, Collection, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

from adapters.catalog import ADAPTERS
from gateway.core.clock import SystemClock
from gateway.crypto.devpki import init_dev_pki
from gateway.testing.processes import (
    POSTGRES_ADMIN_URL,
    SMEVBUS,
    GatewayProcess,
    ServiceProcess,
    free_port,
    fresh_database,
    isolated_vhost,
)

PARTICIPANTS = {"PORTAL": "portal", "ZAGS": "zags", "MVD_MIGR": "mvd", "FNS": "fns"}
#: Each mock agency's module, health path and the path its adapter calls, by adapter name.
MOCKS = {
    "zags": ("adapters.zags.mock_service", "/_health", "/zags?wsdl"),
    "mvd_migration": ("adapters.mvd_migration.mock_service", "/health", ""),
    "fns": ("adapters.fns.mock_service", "/health", ""),
}


@dataclass
class Chain:
    gateway: GatewayProcess
    keys: Path
    #: The started mocks and adapters by name ("mock-fns", "adapter-mvd_migration", ...),
    #: so a fault test can stop one agency and start it again.
    services: dict[str, ServiceProcess] = field(default_factory=dict)
    #: The gateway's own database (its journal), for tests that inspect it.
    database_url: str = ""
    #: Each adapter's port of /health, /ready and /metrics, by adapter name ("zags").
    ops_ports: dict[str, int] = field(default_factory=dict)


def _adapter(
    binary: Path,
    name: str,
    gateway: GatewayProcess,
    agency: str,
    pull: bool,
    extra: Sequence[str],
    ops_port: int,
) -> list[str]:
    return [
        str(binary),
        "adapter",
        name,
        *(["--pull"] if pull else []),
        "--gateway-url",
        gateway.base_url,
        "--agency-url",
        agency,
        "--ops-port",
        str(ops_port),
        *extra,
    ]


@contextmanager
def running_chain(
    amqp_url: str,
    keys: Path,
    logs: Path,
    *,
    api_tokens: dict[str, str] | None = None,
    gateway_env: dict[str, str] | None = None,
    shared_env: dict[str, str] | None = None,
    pulling: Collection[str] = ("zags",),
    adapter_args: Sequence[str] = (),
    database_admin_url: str = POSTGRES_ADMIN_URL,
    route_database: Callable[[str], str] = str,
    binary: Path = SMEVBUS,
) -> Iterator[Chain]:
    """The chain running; ``shared_env`` adds SMEVBUS_* settings of every process
    (``SMEVBUS_LOG_FORMAT``, say), ``gateway_env`` those of the gateway; the adapters
    named in ``pulling`` poll /ws, the others consume by push; every adapter gets
    ``adapter_args`` too. Each process's stdout and stderr go to ``logs/<name>.log``.
    The gateway's database is a fresh one on the server ``database_admin_url`` names,
    reached at ``route_database(its URL)`` (a benchmark's statement counter, say).
    The gateway checks each agency's reachability at its mock's health endpoint
    (``SMEVBUS_AGENCY_PROBES``), as docker-compose.yml points it. ``binary`` is the
    ``smevbus`` of the gateway and the adapters (another checkout's, say); the mock
    agencies are this checkout's either way."""
    init_dev_pki(keys, {**PARTICIPANTS, "SMEVBUS": "bus"}, clock=SystemClock())
    env = {**(shared_env or {}), "SMEVBUS_KEYS_DIR": str(keys)}
    ports = {"zags": free_port(), "mvd_migration": free_port(), "fns": free_port()}
    ops_ports = {name: free_port() for name in ports}
    probes = {
        ADAPTERS[name].mnemonic: f"http://127.0.0.1:{ports[name]}{health}"
        for name, (_, health, _) in MOCKS.items()
    }
    python = sys.executable
    started: list[ServiceProcess] = []
    with isolated_vhost(amqp_url) as vhost_url, fresh_database(database_admin_url) as db_url:
        gateway = GatewayProcess(
            env={
                **env,
                "SMEVBUS_TRANSPORT": "amqp",
                "SMEVBUS_AMQP_URL": vhost_url,
                "SMEVBUS_DATABASE_URL": route_database(db_url),
                "SMEVBUS_API_TOKENS": json.dumps(api_tokens or {}),
                "SMEVBUS_AGENCY_PROBES": json.dumps(probes),
                **(gateway_env or {}),
            },
            log_path=logs / "gateway.log",
            binary=binary,
        )
        gateway.start()
        services: dict[str, ServiceProcess] = {}
        for name, (module, health, path) in MOCKS.items():
            base = f"http://127.0.0.1:{ports[name]}"
            services[f"mock-{name}"] = ServiceProcess(
                [python, "-m", module, "--port", str(ports[name])],
                logs / f"mock-{name}.log",
                env=env,
                ready_url=base + health,
            )
            services[f"adapter-{name}"] = ServiceProcess(
                _adapter(
                    binary,
                    name,
                    gateway,
                    base + path,
                    name in pulling,
                    adapter_args,
                    ops_ports[name],
                ),
                logs / f"adapter-{name}.log",
                env={**env, "SMEVBUS_AMQP_URL": vhost_url},
                # Up once it serves /health: its consumers (push) are subscribed by then.
                ready_url=f"http://127.0.0.1:{ops_ports[name]}/health",
            )
        try:
            for service in services.values():
                service.start()
                started.append(service)
            yield Chain(gateway, keys, services, db_url, ops_ports)
        finally:
            for service in reversed(started):
                service.stop()
            gateway.stop()
