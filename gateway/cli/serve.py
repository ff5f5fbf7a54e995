"""The processes of the bus: ``demo`` (all in one), ``serve`` (the gateway), ``adapter``."""

from __future__ import annotations

import asyncio
import os
import shutil
import tempfile
from pathlib import Path
from typing import Annotated

import typer

from gateway.cli.app import app, console, fail
from gateway.cli.keys import KeysDir
from gateway.config import REPO_ROOT, Settings
from gateway.core.errors import SmevbusError
from gateway.crypto.profiles import SignatureProfile


@app.command()
def demo(
    keys_dir: KeysDir = REPO_ROOT / "keys",
    database: Annotated[str, typer.Option(help="Journal URL.")] = "sqlite://",
    profile: Annotated[SignatureProfile, typer.Option()] = SignatureProfile.SMEV,
) -> None:
    """Run a signed request/response round trip in one process (memory transport, SQLite)."""
    from gateway.demo.run import run_demo
    from gateway.logs import configure_logging

    configure_logging(level="WARNING")
    settings = Settings(
        transport="memory", database_url=database, keys_dir=keys_dir, signature_profile=profile
    )
    try:
        code = asyncio.run(run_demo(settings, console))
    except SmevbusError as exc:
        raise fail(exc) from None
    raise typer.Exit(code)


@app.command()
def serve(
    host: Annotated[str | None, typer.Option(help="Bind address (SMEVBUS_HTTP_HOST).")] = None,
    port: Annotated[int | None, typer.Option(help="Port (SMEVBUS_HTTP_PORT).")] = None,
    workers: Annotated[
        int | None,
        typer.Option(
            min=1, max=64, help="Gateway processes on the port (SMEVBUS_HTTP_WORKERS; amqp only)."
        ),
    ] = None,
) -> None:
    """Run the gateway: SOAP /ws (WSDL at /ws?wsdl), /health, /ready, /metrics.

    Transport, journal, keys and registry come from SMEVBUS_* settings
    (SMEVBUS_TRANSPORT=amqp and SMEVBUS_DATABASE_URL=postgresql://... in production);
    HTTPS, with participants' TLS client certificates, from SMEVBUS_TLS_*.
    """
    import uvicorn

    from gateway.api.app import create_app
    from gateway.api.tls import uvicorn_tls
    from gateway.logs import configure_logging
    from gateway.ops import metrics

    # Worker processes read their settings from the environment: put the options there.
    for name, value in (("HTTP_HOST", host), ("HTTP_PORT", port), ("HTTP_WORKERS", workers)):
        if value is not None:
            os.environ[f"SMEVBUS_{name}"] = str(value)
    settings = Settings()
    if settings.http_workers > 1 and settings.transport == "memory":
        raise typer.BadParameter(
            "several gateway processes need SMEVBUS_TRANSPORT=amqp: the memory transport "
            "lives in one process",
            param_hint="--workers",
        )
    configure_logging(fmt=settings.log_format, level=settings.log_level, secrets=settings.secrets)
    temporary = None
    if settings.http_workers > 1:
        # Before the workers start: each records into files there, /metrics merges them.
        directory = settings.metrics_dir
        if directory is None:
            directory = temporary = Path(tempfile.mkdtemp(prefix="smevbus-metrics-"))
        metrics.enable_multiprocess(metrics.prepare_multiprocess_dir(directory))
    try:
        uvicorn.run(
            create_app(settings) if settings.http_workers == 1 else "gateway.api.app:app_from_env",
            factory=settings.http_workers > 1,
            workers=settings.http_workers,
            host=settings.http_host,
            port=settings.http_port,
            log_level=settings.log_level.lower(),
            log_config=None,  # uvicorn logs through configure_logging's redacting pipeline
            timeout_graceful_shutdown=30,
            server_header=False,  # no "server: uvicorn" on every answer: nothing to advertise
            proxy_headers=settings.proxy_headers,
            **{"http": "httptools", "loop": "uvloop", **uvicorn_tls(settings)},
        )
    finally:
        if temporary is not None:
            shutil.rmtree(temporary, ignore_errors=True)


@app.command()
def adapter(
    name: Annotated[str, typer.Argument(help="zags, mvd_migration or fns.")],
    gateway_url: Annotated[
        str, typer.Option(help="The gateway whose /ws takes the answers (and the pulls).")
    ] = "http://127.0.0.1:8080",
    agency_url: Annotated[
        str | None, typer.Option(help="The agency's own interface (see the adapter).")
    ] = None,
    pull: Annotated[
        bool,
        typer.Option(
            "--pull/--push",
            help="Push: consume the participant's queue on RabbitMQ (SMEVBUS_AMQP_URL); "
            "pull: SOAP GetRequest polling of /ws.",
        ),
    ] = False,
    poll_max: Annotated[
        float,
        typer.Option(
            "--poll-max",
            min=0.05,
            help="Pull mode: longest wait between polls of an empty queue, seconds (the "
            "wait starts at 0.5 s, or this if shorter, and doubles while idle). Bounds how "
            "late a request arriving at a quiet queue is picked up.",
        ),
    ] = 10.0,
    workers: Annotated[
        int,
        typer.Option(
            min=1,
            max=256,
            help="Requests answered at once (each worker answers one at a time): an "
            "agency taking 0.2 s per answer serves 5 requests/s per worker.",
        ),
    ] = 1,
    ops_port: Annotated[
        int | None,
        typer.Option(
            min=0,
            max=65535,
            help="Port of this process's /health, /ready and /metrics "
            "(SMEVBUS_ADAPTER_OPS_PORT, default 9102; 0: none).",
        ),
    ] = None,
) -> None:
    """Run one agency adapter: take its requests from the bus, ask the agency, answer signed."""
    import uvloop

    from adapters.catalog import ADAPTERS
    from adapters.process import run_adapter
    from gateway.logs import configure_logging

    if name not in ADAPTERS:
        raise typer.BadParameter(f"unknown adapter {name!r}; known: {', '.join(ADAPTERS)}")
    settings = Settings()
    configure_logging(fmt=settings.log_format, level=settings.log_level)
    url = agency_url or ADAPTERS[name].default_agency_url
    # uvloop as in serve: the adapter's loop runs an AMQP consumer and two HTTP clients.
    uvloop.run(
        run_adapter(
            name,
            settings,
            gateway_url,
            url,
            pull=pull,
            poll_max=poll_max,
            workers=workers,
            ops_port=ops_port,
        )
    )
