"""The ``smevbus`` command tree and what its commands share: the consoles, failing."""

from __future__ import annotations

import typer
from rich.console import Console

from gateway.core.errors import SmevbusError

app = typer.Typer(
    help="smevbus: interagency message bus and gateway (SMEV 3 / X-Road style).",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
)
keys_app = typer.Typer(help="Keys and certificates.", no_args_is_help=True)
app.add_typer(keys_app, name="keys")
dlq_app = typer.Typer(help="Dead letters: list, show, replay, purge.", no_args_is_help=True)
app.add_typer(dlq_app, name="dlq")

console = Console()
err = Console(stderr=True)


def fail(error: SmevbusError) -> typer.Exit:
    """Print ``error`` (its code and message) on stderr; the exit to raise (status 1)."""
    err.print(f"[bold red]{error.code}[/]: {error.message}")
    return typer.Exit(code=1)
