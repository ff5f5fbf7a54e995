"""``smevbus``: the command line of the bus (typer)."""

from __future__ import annotations

import asyncio
import os
import sys
from collections.abc import Callable, Coroutine
from datetime import datetime
from enum import StrEnum
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, Literal, TypeVar

import typer
from rich.console import Console

from gateway.config import REPO_ROOT, Settings
from gateway.core.clock import SystemClock
from gateway.core.errors import InternalError, SmevbusError, Unauthenticated
from gateway.crypto.signer import SignatureProfile
from gateway.transport.base import Direction

app = typer.Typer(
    help="smevbus: interagency message bus and gateway (SMEV 3 / X-Road style).",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
)
keys_app = typer.Typer(help="Keys and certificates.", no_args_is_help=True)
app.add_typer(keys_app, name="keys")
dlq_app = typer.Typer(help="Dead letters: list, show, replay.", no_args_is_help=True)
app.add_typer(dlq_app, name="dlq")

console = Console()
T = TypeVar("T")
err = Console(stderr=True)


class KeyKind(StrEnum):
    EC = "ec"
    RSA = "rsa"


KeysDir = Annotated[Path, typer.Option("--dir", "--keys", help="Keys directory.")]


def _fail(error: SmevbusError) -> typer.Exit:
    err.print(f"[bold red]{error.code}[/]: {error.message}")
    return typer.Exit(code=1)


@keys_app.command("init")
def keys_init(
    keys_dir: KeysDir = REPO_ROOT / "keys",
    registry: Annotated[Path | None, typer.Option(help="Registry TOML.")] = None,
    key_type: Annotated[KeyKind, typer.Option(help="EC P-256 or RSA 2048.")] = KeyKind.EC,
    tls_host: Annotated[
        list[str] | None,
        typer.Option(
            "--tls-host",
            help="A host name or address the gateway's TLS certificate is also for "
            "(besides localhost, 127.0.0.1, ::1); repeatable.",
        ),
    ] = None,
) -> None:
    """Make the dev PKI: root CA, CRL, one key and certificate per participant (for
    signing and as its TLS client certificate), the gateway's TLS server certificate.

    Written once: existing files are kept, only missing certificates are added.
    """
    from gateway.assembly import load_registry
    from gateway.crypto.devpki import init_dev_pki

    settings = Settings(keys_dir=keys_dir)
    if registry is not None:
        settings = settings.model_copy(update={"registry_file": registry})
    try:
        reg = load_registry(settings)
    except SmevbusError as exc:
        raise _fail(exc) from None
    participants = {p.mnemonic: p.name for p in reg.participants}
    participants[reg.bus_mnemonic] = "smevbus"
    existed = {p for p in keys_dir.glob("*.pem")} if keys_dir.exists() else set()
    kind: Literal["ec", "rsa"] = "rsa" if key_type is KeyKind.RSA else "ec"
    paths = init_dev_pki(
        keys_dir, participants, key_type=kind, tls_hosts=tls_host or (), clock=SystemClock()
    )
    made = [p for p in paths if p not in existed]
    console.print(
        f"dev PKI in {keys_dir}: {len(made)} file(s) written, {len(paths) - len(made)} kept "
        f"({', '.join(sorted(participants))})"
    )


@app.command()
def sign(
    source: Annotated[Path, typer.Argument(help="XML file: a SOAP envelope or a bus element.")],
    key: Annotated[Path, typer.Option(help="Private key (PEM).")],
    cert: Annotated[Path, typer.Option(help="Certificate (PEM).")],
    output: Annotated[Path, typer.Option("-o", "--output", help="Where to write.")] = Path("-"),
    profile: Annotated[SignatureProfile, typer.Option()] = SignatureProfile.SMEV,
) -> None:
    """Sign the signed part of each bus element in SOURCE (e.g. SenderProvidedRequestData)."""
    from gateway.crypto.tools import sign_document

    try:
        signed = sign_document(source.read_bytes(), key.read_bytes(), cert.read_bytes(), profile)
    except SmevbusError as exc:
        raise _fail(exc) from None
    if str(output) == "-":
        sys.stdout.buffer.write(signed)
    else:
        output.write_bytes(signed)
        console.print(f"signed -> {output}")


@app.command()
def verify(
    source: Annotated[Path, typer.Argument(help="Signed XML file.")],
    keys_dir: KeysDir = REPO_ROOT / "keys",
) -> None:
    """Verify every signature in SOURCE against the trust store in the keys directory."""
    from gateway.crypto.keystore import load_verifier
    from gateway.crypto.tools import verify_document

    try:
        results = verify_document(source.read_bytes(), load_verifier(keys_dir, SystemClock()))
    except SmevbusError as exc:
        raise _fail(exc) from None
    for where, subject in results:
        console.print(f"[green]valid[/] {where}: signed by {subject}")


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
        raise _fail(exc) from None
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
    """Run the gateway: SOAP /ws (WSDL at /ws?wsdl), /health, /ready.

    Transport, journal, keys and registry come from SMEVBUS_* settings
    (SMEVBUS_TRANSPORT=amqp and SMEVBUS_DATABASE_URL=postgresql://... in production);
    HTTPS, with participants' TLS client certificates, from SMEVBUS_TLS_*.
    """
    import uvicorn

    from gateway.api.app import create_app
    from gateway.api.tls import uvicorn_tls
    from gateway.logs import configure_logging

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
    uvicorn.run(
        create_app(settings) if settings.http_workers == 1 else "gateway.api.app:app_from_env",
        factory=settings.http_workers > 1,
        workers=settings.http_workers,
        host=settings.http_host,
        port=settings.http_port,
        log_level=settings.log_level.lower(),
        log_config=None,  # uvicorn logs through configure_logging's redacting pipeline
        timeout_graceful_shutdown=30,
        **uvicorn_tls(settings),
    )


# --- dead letters (logic in gateway.ops.deadletters) ------------------------------------

DirectionOption = Annotated[
    Direction,
    typer.Option("--direction", "-d", help="requests (to providers) or responses (to consumers)."),
]


def _dlq_settings(participant: str | None) -> tuple[Settings, list[str]]:
    """Settings, and the participants to look at (checked against the registry)."""
    from gateway.assembly import load_registry

    settings = Settings()
    if settings.transport != "amqp":
        raise _fail(
            InternalError(
                "dead letters of the memory transport live inside the process running it; "
                "set SMEVBUS_TRANSPORT=amqp (and SMEVBUS_AMQP_URL) to reach the broker's"
            )
        )
    try:
        registry = load_registry(settings)
        if participant is not None:
            registry.get(participant)
    except SmevbusError as exc:
        raise _fail(exc) from None
    return settings, [participant] if participant is not None else list(registry.mnemonics)


def _run_dlq(work: Coroutine[Any, Any, T]) -> T:
    try:
        return asyncio.run(work)
    except SmevbusError as exc:
        raise _fail(exc) from None


@dlq_app.command("list")
def dlq_list(
    participant: Annotated[str | None, typer.Argument(help="Mnemonic; all if left out.")] = None,
    direction: Annotated[
        Direction | None, typer.Option("--direction", "-d", help="Both if left out.")
    ] = None,
    limit: Annotated[int, typer.Option(min=1, help="Per queue.")] = 100,
) -> None:
    """List dead letters: message id, reason, detail, message type, sender, journal state."""
    from gateway.ops.deadletters import DeadLetterSummary, open_desk

    settings, participants = _dlq_settings(participant)
    directions = [direction] if direction is not None else list(Direction)

    async def collect() -> list[DeadLetterSummary]:
        async with open_desk(settings, participants) as desk:
            return [
                row
                for p in participants
                for d in directions
                for row in await desk.listing(d, p, limit=limit)
            ]

    rows = _run_dlq(collect())
    if not rows:
        console.print("no dead letters")
        return
    # One tab-separated line each, never wrapped: readable, and fit for grep and cut.
    lines = ["queue\tmessage id\treason\tmessage type\tsender\tjournal\tdetail"]
    lines += [
        f"{r.direction}.{r.participant}\t{r.message_id}\t{r.reason}\t{r.message_type or '?'}"
        f"\t{r.sender or '?'}\t{r.journal_state or '-'}\t{r.detail}"
        for r in rows
    ]
    console.print("\n".join(lines), markup=False, highlight=False, soft_wrap=True)


@dlq_app.command("show")
def dlq_show(
    participant: Annotated[str, typer.Argument(help="Mnemonic whose DLQ holds it.")],
    message_id: Annotated[str, typer.Argument(help="MessageID.")],
    direction: DirectionOption = Direction.REQUESTS,
) -> None:
    """Show one dead letter: why, its metadata, its journal history, then its XML."""
    from gateway.ops.deadletters import DeadLetterDetail, open_desk

    settings, participants = _dlq_settings(participant)

    async def fetch() -> DeadLetterDetail:
        async with open_desk(settings, participants) as desk:
            return await desk.show(direction, participant, message_id)

    found = _run_dlq(fetch())
    row = found.summary
    lines = [
        f"message id: {row.message_id}",
        f"queue:      {row.direction}.{row.participant}",
        f"reason:     {row.reason}: {row.detail}",
        f"type:       {row.message_type or '?'}",
        f"sender:     {row.sender or '?'}",
        f"expires at: {row.expires_at.isoformat() if row.expires_at else '-'}",
        f"journal:    {row.journal_state or 'not journaled'}",
        *(
            f"  {t.at.isoformat()} {t.to_state} by {t.actor or '?'}"
            + (f": {t.reason}" if t.reason else "")
            for t in found.history
        ),
    ]
    console.print("\n".join(lines), markup=False, highlight=False, soft_wrap=True)
    sys.stdout.flush()
    sys.stdout.buffer.write(found.xml + b"\n")


@dlq_app.command("replay")
def dlq_replay(
    participant: Annotated[str, typer.Argument(help="Mnemonic whose DLQ holds them.")],
    message_ids: Annotated[list[str] | None, typer.Argument(help="MessageIDs to replay.")] = None,
    replay_all: Annotated[bool, typer.Option("--all", help="Replay every dead letter.")] = False,
    direction: DirectionOption = Direction.REQUESTS,
) -> None:
    """Put dead letters back in their queue (journaled QUEUED, "replayed by operator")."""
    from gateway.ops.deadletters import ReplayReport, open_desk

    if bool(message_ids) == replay_all:
        err.print("name the MessageIDs to replay, or pass --all (not both)")
        raise typer.Exit(code=2)
    settings, participants = _dlq_settings(participant)

    async def replay() -> ReplayReport:
        async with open_desk(settings, participants) as desk:
            return await desk.replay(direction, participant, None if replay_all else message_ids)

    report = _run_dlq(replay())
    for message_id in report.replayed:
        console.print(f"[green]replayed[/] {message_id}")
    for message_id, why in report.skipped:
        console.print(f"[yellow]skipped[/] {message_id}: {why}", highlight=False)
    console.print(f"{len(report.replayed)} replayed, {len(report.skipped)} skipped")
    raise typer.Exit(code=1 if report.skipped and not replay_all else 0)


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
) -> None:
    """Run one agency adapter: take its requests from the bus, ask the agency, answer signed."""
    from adapters.catalog import ADAPTERS
    from adapters.process import run_adapter
    from gateway.logs import configure_logging

    if name not in ADAPTERS:
        raise typer.BadParameter(f"unknown adapter {name!r}; known: {', '.join(ADAPTERS)}")
    settings = Settings()
    configure_logging(fmt=settings.log_format, level=settings.log_level)
    url = agency_url or ADAPTERS[name].default_agency_url
    asyncio.run(
        run_adapter(name, settings, gateway_url, url, pull=pull, poll_max=poll_max, workers=workers)
    )


# --- the REST API as a portal: submit, status, trace (gateway.client.rest) --------------

if TYPE_CHECKING:
    from gateway.client.rest import MessageTrace, ServiceRequestsClient, ServiceRequestView

GatewayUrl = Annotated[
    str,
    typer.Option("--gateway-url", envvar="SMEVBUS_GATEWAY_URL", help="The gateway's base URL."),
]
ApiToken = Annotated[
    str | None,
    typer.Option(
        "--token",
        envvar="SMEVBUS_API_TOKEN",
        help="The portal's bearer token (SMEVBUS_API_TOKEN).",
        show_default=False,
    ),
]
DEFAULT_GATEWAY_URL = "http://127.0.0.1:8080"


def rest_client(gateway_url: str, token: str | None) -> ServiceRequestsClient:
    """The REST client the commands use (tests swap it for one over an in-process app)."""
    from gateway.client.rest import ServiceRequestsClient

    if not token:
        raise _fail(Unauthenticated("no API token: pass --token or set SMEVBUS_API_TOKEN"))
    return ServiceRequestsClient(gateway_url, token)


def _run_api(
    gateway_url: str,
    token: str | None,
    work: Callable[[ServiceRequestsClient], Coroutine[Any, Any, T]],
) -> T:
    client = rest_client(gateway_url, token)

    async def run() -> T:
        async with client:
            return await work(client)

    try:
        return asyncio.run(run())
    except SmevbusError as exc:
        raise _fail(exc) from None
    except TimeoutError as exc:
        err.print(f"[bold red]timeout[/]: {exc}", highlight=False)
        raise typer.Exit(code=1) from None


def _print_service_request(view: ServiceRequestView) -> None:
    from rich.table import Table

    ts = _timestamp
    summary = [
        f"id:           {view.id}",
        f"service:      {view.service}",
        f"status:       {view.status}"
        + (f" ({view.completed_by})" if view.completed_by else "")
        + (f", failed part {view.failed_part}" if view.failed_part else ""),
        f"created at:   {ts(view.created_at)}",
        f"deadline at:  {ts(view.deadline_at)}",
        f"completed at: {ts(view.completed_at)}",
    ]
    callback = view.callback
    if callback is not None:
        summary.append(
            f"callback:     {callback.state} after {callback.attempts} attempt(s)"
            + (f", delivered {ts(callback.delivered_at)}" if callback.delivered_at else "")
            + (f", next {ts(callback.next_attempt_at)}" if callback.next_attempt_at else "")
            + (f", last error: {callback.last_error}" if callback.last_error else "")
        )
    console.print("\n".join(summary), markup=False, highlight=False, soft_wrap=True)
    table = Table(title="parts", title_justify="left")
    for name in ("part", "message type", "required", "status", "message id", "replied at"):
        table.add_column(name, no_wrap=name in ("message id", "replied at"))
    for p in view.parts:
        status = str(p.status)
        if p.rejection is not None:
            status += f" ({p.rejection.code}: {p.rejection.description})"
        table.add_row(
            p.id,
            p.message_type,
            "yes" if p.required else "no",
            status,
            str(p.message_id) if p.message_id else "-",
            ts(p.timings.replied_at),
        )
    console.print(table)
    if view.result is not None:
        console.print("result:")
        console.print_json(data=view.result)


def _timestamp(at: datetime | None) -> str:
    return at.isoformat(timespec="seconds") if at is not None else "-"


@app.command()
def submit(
    service: Annotated[str, typer.Argument(help="The service, e.g. child-birth-benefit.")],
    applicant: Annotated[
        Path,
        typer.Option(exists=True, dir_okay=False, help="JSON file with the applicant's data."),
    ],
    wait: Annotated[
        bool, typer.Option("--wait", help="Show the parts as they arrive, then the result.")
    ] = False,
    timeout: Annotated[float, typer.Option(min=0, help="Seconds to --wait at most.")] = 600.0,
    poll_interval: Annotated[float, typer.Option(min=0, help="Seconds between polls.")] = 0.5,
    deadline: Annotated[
        float | None, typer.Option(min=0, help="Overall deadline of the request, seconds.")
    ] = None,
    idempotency_key: Annotated[
        str | None, typer.Option(help="Makes a retried submit return the same request.")
    ] = None,
    callback_url: Annotated[
        str | None,
        typer.Option(help="http(s) URL the gateway POSTs the final result to."),
    ] = None,
    gateway_url: GatewayUrl = DEFAULT_GATEWAY_URL,
    token: ApiToken = None,
) -> None:
    """Submit a service request through the REST API and print its id."""
    import json

    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn

    from gateway.core.aggregation import PartStatus
    from gateway.core.errors import InvalidContent

    try:
        data = json.loads(applicant.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, ValueError) as exc:
        raise _fail(InvalidContent(f"{applicant}: not a JSON file: {exc}")) from None
    if not isinstance(data, dict):
        raise _fail(InvalidContent(f"{applicant}: the applicant must be a JSON object"))

    async def go(api: ServiceRequestsClient) -> ServiceRequestView:
        view = await api.submit(
            service,
            data,
            idempotency_key=idempotency_key,
            deadline_s=deadline,
            callback_url=callback_url,
        )
        console.print(str(view.id), markup=False, highlight=False)
        if not wait:
            return view
        arrived: set[str] = set()
        with Progress(
            TextColumn("[progress.description]{task.description}"),
            BarColumn(),
            MofNCompleteColumn(),
            console=console,
        ) as progress:
            task = progress.add_task(f"{service}: parts", total=len(view.parts))

            def show(current: ServiceRequestView) -> None:
                for p in current.parts:
                    if p.status is not PartStatus.PENDING and p.id not in arrived:
                        arrived.add(p.id)
                        progress.console.print(
                            f"  {p.id} ({p.message_type}): {p.status}", highlight=False
                        )
                progress.update(task, completed=len(arrived), total=len(current.parts))

            show(view)
            final = await api.wait(
                view.id, timeout=timeout, poll_interval=poll_interval, on_progress=show
            )
        _print_service_request(final)
        return final

    _run_api(gateway_url, token, go)


@app.command()
def status(
    request_id: Annotated[str, typer.Argument(metavar="ID", help="The service request id.")],
    gateway_url: GatewayUrl = DEFAULT_GATEWAY_URL,
    token: ApiToken = None,
) -> None:
    """Show a service request: status, its parts and the aggregated result."""
    _print_service_request(_run_api(gateway_url, token, lambda api: api.get(request_id)))


@app.command()
def trace(
    message_id: Annotated[str, typer.Argument(help="A bus MessageID the portal sent or received.")],
    gateway_url: GatewayUrl = DEFAULT_GATEWAY_URL,
    token: ApiToken = None,
) -> None:
    """Show the lifecycle of one bus message: its transitions and the responses to it."""
    from rich.table import Table

    found: MessageTrace = _run_api(gateway_url, token, lambda api: api.trace(message_id))
    lines = [
        f"message id:  {found.message_id}",
        f"kind:        {found.kind} ({found.message_type})",
        f"from -> to:  {found.sender} -> {found.recipient}",
        f"state:       {found.state}",
        f"in reply to: {found.in_reply_to or '-'}",
        f"created at:  {_timestamp(found.created_at)}",
        f"expires at:  {_timestamp(found.expires_at)}",
    ]
    if found.test_message:
        lines.append("test message")
    console.print("\n".join(lines), markup=False, highlight=False, soft_wrap=True)
    table = Table(title="transitions", title_justify="left")
    for name in ("at", "from", "to", "actor", "reason"):
        table.add_column(name, no_wrap=name == "at")
    for t in found.transitions:
        table.add_row(
            _timestamp(t.at), t.from_state or "-", t.to_state, t.actor or "-", t.reason or "-"
        )
    console.print(table)
    for response_id in found.responses:
        console.print(f"response: {response_id}", markup=False, highlight=False)
