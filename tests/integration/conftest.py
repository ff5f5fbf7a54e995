"""Broker fixtures for integration tests.

A test that needs RabbitMQ is skipped when the broker cannot be reached, except
under ``CI=true``, where an unreachable broker fails the run instead of quietly
testing less.
"""

from __future__ import annotations

import os
import shutil
import socket
from urllib.parse import urlsplit

import pytest

from gateway.testing.processes import rabbitmqctl

AMQP_URL = os.environ.get("SMEVBUS_TEST_AMQP_URL", "amqp://guest:guest@127.0.0.1:5672/")


def _unavailable(reason: str) -> None:
    if os.environ.get("CI", "").lower() == "true":
        pytest.fail(f"{reason} (CI=true: integration dependencies are required)")
    pytest.skip(reason)


@pytest.fixture(scope="session")
def amqp_url() -> str:
    """The test broker's URL, once it answers on its port."""
    parts = urlsplit(AMQP_URL)
    try:
        socket.create_connection((parts.hostname or "127.0.0.1", parts.port or 5672), 2).close()
    except OSError as exc:
        _unavailable(f"RabbitMQ unreachable at {parts.hostname}:{parts.port}: {exc}")
    return AMQP_URL


async def close_broker_connections(connection_name: str) -> int:
    """Have the broker force-close every connection with this client-provided name.

    Uses ``rabbitmqctl`` (the management plugin is not needed) and touches only
    our own connections, never other users of a shared broker. Returns how many
    were closed.
    """
    if shutil.which("rabbitmqctl") is None:
        _unavailable("rabbitmqctl not found; cannot force-close broker connections")
    listing = await rabbitmqctl(
        "list_connections", "pid", "client_properties", "--no-table-headers"
    )
    pids = [
        line.split("\t", 1)[0] for line in listing.splitlines() if f'"{connection_name}"' in line
    ]
    for pid in pids:
        await rabbitmqctl("close_connection", pid, "smevbus test: forced close")
    return len(pids)
