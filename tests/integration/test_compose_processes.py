"""The gateway, the FNS mock and its adapter started as docker-compose.yml starts them:
each service's own command and environment (the image's ENV included), with only the
addresses made local: the compose hosts become 127.0.0.1 on free ports, RabbitMQ a
fresh vhost, PostgreSQL a fresh database, /app the repository and /app/keys a dev PKI
made by the `keys` service's own command."""

from __future__ import annotations

import json
import sys
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families

from gateway.config import REPO_ROOT
from gateway.testing.processes import (
    POSTGRES_ADMIN_URL,
    SMEVBUS,
    ServiceProcess,
    free_port,
    fresh_database,
    isolated_vhost,
)
from tests.compose_file import Compose, Service, localise

COMPOSE = Compose()
SCRAPE_TOKEN = (REPO_ROOT / "deploy" / "prometheus" / "ops-token").read_text().strip()


def local_argv(service: Service, addresses: dict[str, str], keys: Path) -> list[str]:
    programs = {"smevbus": str(SMEVBUS), "python": sys.executable}
    argv = [programs.get(a, a) for a in service.argv]
    local = {"/app/keys": str(keys), "0.0.0.0": "127.0.0.1"}
    argv = [local.get(a, a) for a in argv]
    if "--port" in argv:  # a mock: its own port, made local
        at = argv.index("--port") + 1
        argv[at] = addresses[f"{service.name}:{argv[at]}"].rsplit(":", 1)[1]
    return [localise(a, addresses) for a in argv]


def local_env(
    service: Service, addresses: dict[str, str], keys: Path, local: dict[str, str]
) -> dict[str, str]:
    """The service's environment; ``local`` replaces settings outright (stores, ports)."""
    env = {}
    for key, value in service.environment.items():
        if key in local:
            value = local[key]
        elif value.startswith("/app/keys"):
            value = str(keys) + value.removeprefix("/app/keys")
        elif value.startswith("/app/"):
            value = str(REPO_ROOT / value.removeprefix("/app/"))
        env[key] = localise(value, addresses)
    # the image listens on every interface; here loopback is enough
    return {**env, **local, "SMEVBUS_HTTP_HOST": "127.0.0.1"}


@pytest.fixture
def compose_fns(tmp_path: Path) -> Iterator[tuple[dict[str, str], str, str]]:
    """The gateway, mock-fns and adapter-fns running; yields the local addresses and
    the gateway's and the adapter's base URLs."""
    ports = {"gateway": free_port(), "mock-fns": free_port(), "adapter-fns": free_port()}
    addresses = {
        "gateway:8080": f"127.0.0.1:{ports['gateway']}",
        "localhost:8080": f"127.0.0.1:{ports['gateway']}",  # published: SMEVBUS_PUBLIC_URL
        "mock-fns:8702": f"127.0.0.1:{ports['mock-fns']}",
        # not started: the ops console's probes of them find nothing there
        "mock-zags:8091": f"127.0.0.1:{free_port()}",
        "mock-mvd:8701": f"127.0.0.1:{free_port()}",
        # the local broker has no management plugin: the sampler falls back
        "rabbitmq:15672": "127.0.0.1:15672",
    }
    keys = tmp_path / "keys"
    gateway_url = f"http://127.0.0.1:{ports['gateway']}"
    adapter_url = f"http://127.0.0.1:{ports['adapter-fns']}"
    started: list[ServiceProcess] = []
    with isolated_vhost() as amqp_url, fresh_database(POSTGRES_ADMIN_URL) as database_url:
        stores = {"SMEVBUS_AMQP_URL": amqp_url, "SMEVBUS_DATABASE_URL": database_url}
        ready: dict[str, str | None] = {
            "keys": None,  # a one-shot: start() waits for it to exit
            "gateway": f"{gateway_url}/ready",
            "mock-fns": f"http://{addresses['mock-fns:8702']}/health",
            "adapter-fns": f"{adapter_url}/ready",
        }
        local = {
            "gateway": {"SMEVBUS_HTTP_PORT": str(ports["gateway"])},
            "adapter-fns": {"SMEVBUS_ADAPTER_OPS_PORT": str(ports["adapter-fns"])},
        }
        try:
            for name, ready_url in ready.items():
                service = COMPOSE.service(name)
                process = ServiceProcess(
                    local_argv(service, addresses, keys),
                    tmp_path / f"{name}.log",
                    env=local_env(service, addresses, keys, {**stores, **local.get(name, {})}),
                    ready_url=ready_url,
                )
                process.start()
                started.append(process)
                if ready_url is None:
                    assert process.process is not None
                    assert process.process.wait(timeout=60) == 0, process.log_path.read_text()
            yield addresses, gateway_url, adapter_url
        finally:
            for process in reversed(started):
                process.stop()


def metric_families(url: str) -> set[str]:
    assert httpx.get(url, timeout=10).status_code == 401
    answer = httpx.get(url, headers={"Authorization": f"Bearer {SCRAPE_TOKEN}"}, timeout=10)
    assert answer.status_code == 200, answer.text
    return {family.name for family in text_string_to_metric_families(answer.text)}


def test_gateway_and_adapter_run_as_compose_runs_them(
    compose_fns: tuple[dict[str, str], str, str],
) -> None:
    _, gateway_url, adapter_url = compose_fns
    for url in (gateway_url, adapter_url):
        assert httpx.get(f"{url}/health", timeout=10).status_code == 200
        ready = httpx.get(f"{url}/ready", timeout=10).json()
        assert ready["status"] == "ok", ready
    assert set(ready["checks"]) == {"keys", "registry", "gateway"}  # pull: no broker

    # Prometheus's token (deploy/prometheus/ops-token) opens both /metrics
    gateway_families = metric_families(f"{gateway_url}/metrics")
    assert {"smevbus_queue_messages", "smevbus_stage_duration_seconds"} <= gateway_families
    adapter_families = metric_families(f"{adapter_url}/metrics")
    assert {"smevbus_agency_requests", "process_cpu_seconds"} <= adapter_families


def test_the_ops_console_probes_the_agencies_compose_names(
    compose_fns: tuple[dict[str, str], str, str],
) -> None:
    _, gateway_url, _ = compose_fns
    tokens = json.loads(COMPOSE.service("gateway").environment["SMEVBUS_OPS_TOKENS"])
    (operator,) = (token for token, name in tokens.items() if name == "operator")
    headers = {"Authorization": f"Bearer {operator}"}
    check = f"{gateway_url}/api/v1/ops/agencies/{{}}/check"
    fns = httpx.post(check.format("FNS"), headers=headers, timeout=10)
    assert fns.status_code == 200, fns.text
    assert fns.json()["reachable"] is True, fns.json()
    mvd = httpx.post(check.format("MVD_MIGR"), headers=headers, timeout=10).json()
    assert mvd["reachable"] is False, mvd  # its mock is not running
