"""A real ``smevbus serve`` process on its own RabbitMQ vhost and PostgreSQL database.

The gateway runs exactly as in production (same command, same SMEVBUS_* settings);
each test run gets a fresh vhost and database so runs never see each other's queues
or journal, and both are removed afterwards.
"""

from __future__ import annotations

import asyncio
import os
import random
import signal
import socket
import ssl
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import quote

import asyncpg
import httpx

POSTGRES_ADMIN_URL = os.environ.get(
    "SMEVBUS_TEST_POSTGRES_URL", "postgresql://postgres@127.0.0.1:5432/test"
)
SMEVBUS = Path(sys.executable).with_name("smevbus")


def free_port() -> int:
    """A port on 127.0.0.1 that nothing is bound to now, for a child process to listen
    on; below the kernel's ephemeral range where there is room. A port that ``bind(0)``
    hands out comes from that range, where any process's outgoing connection may take
    it before the child binds it (seen: a mock agency refused with EADDRINUSE)."""
    low = _ephemeral_low()
    for _ in range(100):
        port = random.randrange(low - 10_000, low) if low > 11_024 else 0  # noqa: S311
        with socket.socket() as sock:
            try:
                sock.bind(("127.0.0.1", port))
            except OSError:
                continue
            bound: int = sock.getsockname()[1]
            return bound
    raise RuntimeError(f"no free port found below {low}")


def _ephemeral_low() -> int:
    """The first port of the kernel's ephemeral range (Linux's default elsewhere)."""
    try:
        return int(Path("/proc/sys/net/ipv4/ip_local_port_range").read_text().split()[0])
    except (OSError, ValueError, IndexError):
        return 32768


def _rabbitmqctl(*args: str) -> None:
    subprocess.run(["rabbitmqctl", "-q", *args], check=True, capture_output=True, timeout=60)


async def rabbitmqctl(*args: str) -> str:
    """Run ``rabbitmqctl -q ARGS`` without blocking the event loop; its output."""
    process = await asyncio.create_subprocess_exec(
        "rabbitmqctl",
        "-q",
        *args,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    out, err = await asyncio.wait_for(process.communicate(), timeout=60)
    if process.returncode != 0:
        raise RuntimeError(f"rabbitmqctl {' '.join(args)} failed: {err.decode()}")
    return out.decode()


@contextmanager
def isolated_vhost(base_url: str = "amqp://guest:guest@127.0.0.1:5672/") -> Iterator[str]:
    """A fresh vhost for this run; yields its AMQP URL."""
    vhost = f"smevbus-test-{uuid.uuid4().hex[:8]}"
    _rabbitmqctl("add_vhost", vhost)
    try:
        _rabbitmqctl("set_permissions", "-p", vhost, "guest", ".*", ".*", ".*")
        yield base_url.rstrip("/") + "/" + quote(vhost, safe="")
    finally:
        _rabbitmqctl("delete_vhost", vhost)


async def _admin(sql: str, admin_url: str) -> None:
    conn = await asyncpg.connect(admin_url)
    try:
        await conn.execute(sql)
    finally:
        await conn.close()


@contextmanager
def fresh_database(admin_url: str = POSTGRES_ADMIN_URL) -> Iterator[str]:
    """A new, empty PostgreSQL database on the server ``admin_url`` names; yields its URL."""
    name = f"smevbus_it_{uuid.uuid4().hex[:8]}"
    asyncio.run(_admin(f'CREATE DATABASE "{name}"', admin_url))
    try:
        yield admin_url.rsplit("/", 1)[0] + "/" + name
    finally:
        asyncio.run(_admin(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)', admin_url))


@dataclass
class GatewayProcess:
    """``smevbus serve`` as a child process; ``base_url`` once :meth:`start` returned.

    With ``tls`` (a client context: the CA to trust, a client certificate if the
    gateway requires one) it is reached over HTTPS, readiness probe included.
    """

    env: dict[str, str]
    log_path: Path
    port: int = field(default_factory=free_port)
    process: subprocess.Popen[bytes] | None = None
    tls: ssl.SSLContext | None = None
    #: The ``smevbus`` to run: this tree's, or another checkout's (``benchmarks/trees.py``).
    binary: Path = SMEVBUS

    @property
    def base_url(self) -> str:
        return f"{'http' if self.tls is None else 'https'}://127.0.0.1:{self.port}"

    def start(self, ready_within: float = 60.0) -> None:
        env = {**os.environ, **self.env, "SMEVBUS_HTTP_PORT": str(self.port)}
        with self.log_path.open("ab") as log:
            self.process = subprocess.Popen(
                [str(self.binary), "serve"], env=env, stdout=log, stderr=subprocess.STDOUT
            )
        self._wait_ready(ready_within)

    def _wait_ready(self, within: float) -> None:
        # Bounded wait on the readiness endpoint: it answers 200 only once the journal is
        # migrated and the queues are declared.
        deadline = time.monotonic() + within
        while time.monotonic() < deadline:
            assert self.process is not None
            if self.process.poll() is not None:
                raise RuntimeError(f"gateway exited early:\n{self.log_path.read_text()[-3000:]}")
            try:
                ready = httpx.get(f"{self.base_url}/ready", timeout=2, verify=self.tls or True)
                if ready.status_code == 200:
                    return
            except httpx.TransportError:
                pass
            time.sleep(0.1)
        raise TimeoutError(f"gateway not ready in {within}s:\n{self.log_path.read_text()[-3000:]}")

    def kill(self) -> None:
        """SIGKILL: no shutdown handlers run, in-flight work is cut off."""
        if self.process is not None and self.process.poll() is None:
            self.process.send_signal(signal.SIGKILL)
            self.process.wait(timeout=30)

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=40)
            except subprocess.TimeoutExpired:
                self.kill()


@dataclass
class ServiceProcess:
    """Any of our processes (mock agency, adapter) started as compose starts it."""

    argv: list[str]
    log_path: Path
    env: dict[str, str] = field(default_factory=dict)
    ready_url: str | None = None
    process: subprocess.Popen[bytes] | None = None

    def start(self, ready_within: float = 60.0) -> None:
        with self.log_path.open("ab") as log:
            self.process = subprocess.Popen(
                self.argv,
                env={**os.environ, **self.env},
                stdout=log,
                stderr=subprocess.STDOUT,
            )
        if self.ready_url is None:
            return
        deadline = time.monotonic() + ready_within
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"{self.argv} exited:\n{self.log_path.read_text()[-3000:]}")
            try:
                if httpx.get(self.ready_url, timeout=2).status_code == 200:
                    return
            except httpx.TransportError:
                pass
            time.sleep(0.1)
        raise TimeoutError(f"{self.argv} not ready:\n{self.log_path.read_text()[-3000:]}")

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(timeout=30)


class MockAgencyProcess(ServiceProcess):
    """``python -m <module> --port <free port> [args]``: a mock agency, healthy once made."""

    def __init__(self, module: str, log_path: Path, *args: str, health: str = "/health") -> None:
        self.port = free_port()
        self.base_url = f"http://127.0.0.1:{self.port}"
        argv = [sys.executable, "-m", module, "--port", str(self.port), *args]
        super().__init__(argv, log_path, ready_url=self.base_url + health)
        try:
            self.start(ready_within=30.0)
        except BaseException:
            self.stop()
            raise
