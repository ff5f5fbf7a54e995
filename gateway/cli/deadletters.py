"""Dead letters on RabbitMQ: ``dlq list``, ``dlq show``, ``dlq replay``.

The logic is :mod:`gateway.ops.deadletters`; these commands find the settings and the
participants, and print.
"""

from __future__ import annotations

import asyncio
import sys
from collections.abc import Coroutine
from typing import Annotated, Any, TypeVar

import typer

from gateway.cli.app import console, dlq_app, err, fail
from gateway.config import Settings
from gateway.core.errors import InternalError, SmevbusError
from gateway.transport.base import Direction

T = TypeVar("T")

DirectionOption = Annotated[
    Direction,
    typer.Option("--direction", "-d", help="requests (to providers) or responses (to consumers)."),
]


def _dlq_settings(participant: str | None) -> tuple[Settings, list[str]]:
    """Settings, and the participants to look at (checked against the registry)."""
    from gateway.bus import load_registry

    settings = Settings()
    if settings.transport != "amqp":
        raise fail(
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
        raise fail(exc) from None
    return settings, [participant] if participant is not None else list(registry.mnemonics)


def _run_dlq(work: Coroutine[Any, Any, T]) -> T:
    try:
        return asyncio.run(work)
    except SmevbusError as exc:
        raise fail(exc) from None


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
