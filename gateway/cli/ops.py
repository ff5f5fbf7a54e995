"""The operator's commands over the ops REST API: ``queues``, ``kpi``, ``kpi export``,
``dlq purge`` (:mod:`gateway.client.ops`).

They read what ``/ui`` shows, from a running gateway (``--url``, or
``SMEVBUS_GATEWAY_URL``), as an operator (``--token``, or ``SMEVBUS_OPS_TOKEN``: a token
of the gateway's ``SMEVBUS_OPS_TOKENS``); a purge is journaled with that operator's name.
"""

from __future__ import annotations

import asyncio
import contextlib
import sys
from collections.abc import Callable, Coroutine
from datetime import UTC, datetime, timedelta
from enum import StrEnum
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, TypeVar

import typer

from gateway.cli.app import app, console, dlq_app, err, fail
from gateway.cli.deadletters import DirectionOption
from gateway.cli.portal import DEFAULT_GATEWAY_URL
from gateway.core.errors import SmevbusError, Unauthenticated
from gateway.transport.base import Direction

if TYPE_CHECKING:
    from gateway.client.ops import OpsClient
    from gateway.ops.kpi import KpiReport
    from gateway.wire.ops import KpiOut, QueueList

T = TypeVar("T")

GatewayUrl = Annotated[
    str,
    typer.Option(
        "--url", "--gateway-url", envvar="SMEVBUS_GATEWAY_URL", help="The gateway's base URL."
    ),
]
OpsToken = Annotated[
    str | None,
    typer.Option(
        "--token",
        envvar="SMEVBUS_OPS_TOKEN",
        help="An operator token (SMEVBUS_OPS_TOKEN).",
        show_default=False,
    ),
]
Since = Annotated[
    datetime | None,
    typer.Option("--from", help="Start, inclusive, UTC."),
]
Until = Annotated[datetime | None, typer.Option("--to", help="End, exclusive, UTC.")]

kpi_app = typer.Typer(
    help="Agency availability and answer-time KPIs, service outcomes; `kpi export` for open data.",
    invoke_without_command=True,
)
app.add_typer(kpi_app, name="kpi")


class KpiFormat(StrEnum):
    TABLE = "table"
    CSV = "csv"
    JSON = "json"


class Granularity(StrEnum):
    DAY = "day"
    MONTH = "month"


def ops_client(url: str, token: str | None) -> OpsClient:
    """The client the commands use (tests swap it for one over an in-process app)."""
    from gateway.client.ops import OpsClient

    if not token:
        raise fail(Unauthenticated("no operator token: pass --token or set SMEVBUS_OPS_TOKEN"))
    return OpsClient(url, token)


def _run_ops(url: str, token: str | None, work: Callable[[OpsClient], Coroutine[Any, Any, T]]) -> T:
    client = ops_client(url, token)

    async def run() -> T:
        async with client:
            return await work(client)

    try:
        return asyncio.run(run())
    except SmevbusError as exc:
        raise fail(exc) from None


def _aware(value: datetime | None) -> datetime | None:
    return None if value is None or value.tzinfo else value.replace(tzinfo=UTC)


# --- queues ---------------------------------------------------------------------------


def _number(value: float | None, fmt: str = "{:d}") -> str:
    return "-" if value is None else fmt.format(value)


def queue_table(queues: QueueList) -> Any:
    from rich.table import Table

    table = Table(title="queues", title_justify="left")
    for name in ("queue", "depth", "unacked", "oldest age, s", "consumers", "dead letters"):
        table.add_column(name, justify="left" if name == "queue" else "right")
    for q in queues.items:
        table.add_row(
            q.name,
            str(q.ready),
            _number(q.unacked),
            _number(q.oldest_age_s, "{:.1f}"),
            _number(q.consumers),
            f"[red]{q.dead_letters}[/]" if q.dead_letters else "0",
        )
    return table


@app.command()
def queues(
    watch: Annotated[bool, typer.Option("--watch", help="Refresh until interrupted.")] = False,
    interval: Annotated[float, typer.Option(min=0.5, help="Seconds between refreshes.")] = 2.0,
    url: GatewayUrl = DEFAULT_GATEWAY_URL,
    token: OpsToken = None,
) -> None:
    """Every participant queue: depth, unacked, oldest message's age, consumers, dead letters."""
    if not watch:
        console.print(queue_table(_run_ops(url, token, lambda ops: ops.queues())))
        return
    from rich.live import Live

    async def follow(ops: OpsClient) -> None:
        with Live(queue_table(await ops.queues()), console=console) as live:
            while True:
                await asyncio.sleep(interval)
                live.update(queue_table(await ops.queues()))

    with contextlib.suppress(KeyboardInterrupt):
        _run_ops(url, token, follow)


# --- kpi ------------------------------------------------------------------------------


def kpi_report(kpi: KpiOut) -> KpiReport:
    """The wire's KPIs as the open-data writer takes them (ratios derive from counts)."""
    from gateway.ops.kpi import AgencyKpi, KpiReport, Period, ServiceKpi

    derived = {"availability", "meets_target", "rejection_rate"}
    return KpiReport(
        period=Period(kpi.period_start, kpi.period_end),
        computed_at=kpi.computed_at,
        answer_timeout=timedelta(seconds=kpi.answer_timeout_s),
        agencies=tuple(AgencyKpi(**a.model_dump(exclude=derived)) for a in kpi.agencies),
        services=tuple(ServiceKpi(**s.model_dump()) for s in kpi.services),
    )


def _ratio(value: float | None) -> str:
    return "-" if value is None else f"{value:.1%}"


def _print_kpi_table(kpi: KpiOut) -> None:
    from rich.table import Table

    agencies = Table(
        title=f"agencies {kpi.period_start.isoformat()} .. {kpi.period_end.isoformat()}"
        f" (target {kpi.availability_target:.0%})",
        title_justify="left",
    )
    names = ("agency", "message type", "volume", "availability", "rejected", "p50, s", "p95, s")
    for name in names:
        agencies.add_column(name, justify="left" if name in names[:2] else "right")
    for a in kpi.agencies:
        availability = _ratio(a.availability)
        if a.meets_target is False:
            availability = f"[red]{availability}[/]"
        agencies.add_row(
            a.agency if a.message_type is None else "",
            a.message_type or "(all)",
            str(a.volume),
            availability,
            _ratio(a.rejection_rate),
            _number(a.answer_p50_s, "{:.3f}"),
            _number(a.answer_p95_s, "{:.3f}"),
        )
    services = Table(title="services", title_justify="left")
    names = ("service", "volume", "completed", "partial", "failed", "timed out", "pending")
    for name in (*names, "p50, s", "p95, s"):
        services.add_column(name, justify="left" if name == "service" else "right")
    for s in kpi.services:
        services.add_row(
            s.service,
            *(str(n) for n in (s.volume, s.completed, s.partial, s.failed, s.timed_out)),
            str(s.pending),
            _number(s.result_p50_s, "{:.3f}"),
            _number(s.result_p95_s, "{:.3f}"),
        )
    console.print(agencies)
    console.print(services)


def _kpi_csv(kpi: KpiOut) -> str:
    from gateway.ops.open_data import (
        AGENCY_COLUMNS,
        SERVICE_COLUMNS,
        agency_row,
        csv_text,
        service_row,
    )

    report = kpi_report(kpi)
    label = f"{kpi.period_start.isoformat()}/{kpi.period_end.isoformat()}"
    agencies = csv_text(
        AGENCY_COLUMNS, (agency_row(label, report.period, a) for a in report.agencies)
    )
    services = csv_text(
        SERVICE_COLUMNS, (service_row(label, report.period, s) for s in report.services)
    )
    return f"{agencies}\n{services}"


@kpi_app.callback()
def kpi(
    ctx: typer.Context,
    start: Since = None,
    end: Until = None,
    agency: Annotated[str | None, typer.Option(help="One agency's rows only.")] = None,
    output: Annotated[KpiFormat, typer.Option("--format", help="How to print.")] = KpiFormat.TABLE,
    url: GatewayUrl = DEFAULT_GATEWAY_URL,
    token: OpsToken = None,
) -> None:
    """KPIs of [--from, --to) (default: the last day): per agency and message type, per
    service. CSV has the open-data columns: agencies, a blank line, services."""
    if ctx.invoked_subcommand is not None:
        return
    found = _run_ops(
        url, token, lambda ops: ops.kpi(start=_aware(start), end=_aware(end), agency=agency)
    )
    if output is KpiFormat.JSON:
        sys.stdout.write(found.model_dump_json(indent=2) + "\n")
    elif output is KpiFormat.CSV:
        sys.stdout.write(_kpi_csv(found))
    else:
        _print_kpi_table(found)


def _last_complete(unit: Granularity, now: datetime) -> tuple[datetime, datetime]:
    """The last whole day or month before ``now`` (UTC)."""
    today = now.astimezone(UTC).replace(hour=0, minute=0, second=0, microsecond=0)
    if unit is Granularity.DAY:
        return today - timedelta(days=1), today
    this_month = today.replace(day=1)
    return (this_month - timedelta(days=1)).replace(day=1), this_month


@kpi_app.command("export")
def kpi_export(
    out: Annotated[Path, typer.Option("--out", file_okay=False, help="Directory to write.")],
    period: Annotated[
        Granularity, typer.Option("--period", help="One file set per day or month.")
    ] = Granularity.DAY,
    start: Since = None,
    end: Until = None,
    url: GatewayUrl = DEFAULT_GATEWAY_URL,
    token: OpsToken = None,
) -> None:
    """Write the KPIs as open data: per period, kpi-agencies-<period>.csv,
    kpi-services-<period>.csv and kpi-<period>.json (columns in docs/operations.md).
    Default: the last complete day (or month)."""
    from gateway.ops.open_data import split_periods, write_open_data

    default_start, default_end = _last_complete(period, datetime.now(UTC))
    first, last = _aware(start) or default_start, _aware(end) or default_end
    try:
        pieces = split_periods(first, last, period.value)
    except ValueError as exc:
        raise typer.BadParameter(str(exc), param_hint="--from/--to") from None

    async def export(ops: OpsClient) -> list[Path]:
        written: list[Path] = []
        for label, piece in pieces:
            found = await ops.kpi(start=piece.start, end=piece.end)
            written += write_open_data(kpi_report(found), out, label)
        return written

    for path in _run_ops(url, token, export):
        console.print(str(path), markup=False, highlight=False)


# --- dlq purge ------------------------------------------------------------------------


@dlq_app.command("purge")
def dlq_purge(
    participant: Annotated[str, typer.Argument(help="Mnemonic whose DLQ to empty.")],
    direction: DirectionOption = Direction.REQUESTS,
    yes: Annotated[bool, typer.Option("--yes", "-y", help="Do not ask for confirmation.")] = False,
    url: GatewayUrl = DEFAULT_GATEWAY_URL,
    token: OpsToken = None,
) -> None:
    """Drop every dead letter of the queue for good, through the gateway (each journaled
    PURGED with the operator's name)."""
    queue = f"{direction}.{participant}"
    if not yes and not typer.confirm(f"drop every dead letter of {queue} for good?"):
        err.print("nothing purged")
        raise typer.Exit(code=1)
    purged = _run_ops(url, token, lambda ops: ops.purge(direction.value, participant))
    console.print(f"{purged.purged} dead letter(s) of {queue} purged", highlight=False)
