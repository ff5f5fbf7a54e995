"""The REST API as a portal: ``submit``, ``status``, ``trace`` (:mod:`gateway.client.rest`)."""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Coroutine
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, TypeVar

import typer

from gateway.cli.app import app, console, err, fail
from gateway.core.errors import SmevbusError, Unauthenticated

T = TypeVar("T")

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
        raise fail(Unauthenticated("no API token: pass --token or set SMEVBUS_API_TOKEN"))
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
        raise fail(exc) from None
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
        raise fail(InvalidContent(f"{applicant}: not a JSON file: {exc}")) from None
    if not isinstance(data, dict):
        raise fail(InvalidContent(f"{applicant}: the applicant must be a JSON object"))

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
