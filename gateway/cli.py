"""``smevbus``: the command line of the bus (typer)."""

from __future__ import annotations

import asyncio
import sys
from enum import StrEnum
from pathlib import Path
from typing import Annotated, Literal

import typer
from rich.console import Console

from gateway.config import REPO_ROOT, Settings
from gateway.core.clock import SystemClock
from gateway.core.errors import SmevbusError
from gateway.crypto.signer import SignatureProfile

app = typer.Typer(
    help="smevbus: interagency message bus and gateway (SMEV 3 / X-Road style).",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
)
keys_app = typer.Typer(help="Keys and certificates.", no_args_is_help=True)
app.add_typer(keys_app, name="keys")

console = Console()
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
) -> None:
    """Make the dev PKI: root CA, CRL, one key and certificate per participant.

    Written once: existing files are kept, only missing participants are added.
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
    paths = init_dev_pki(keys_dir, participants, key_type=kind, clock=SystemClock())
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
) -> None:
    """Run the gateway: SOAP /ws (WSDL at /ws?wsdl), /health, /ready.

    Transport, journal, keys and registry come from SMEVBUS_* settings
    (SMEVBUS_TRANSPORT=amqp and SMEVBUS_DATABASE_URL=postgresql://... in production).
    """
    import uvicorn

    from gateway.api.app import create_app
    from gateway.logs import configure_logging

    settings = Settings()
    configure_logging(fmt=settings.log_format, level=settings.log_level)
    uvicorn.run(
        create_app(settings),
        host=host or settings.http_host,
        port=port or settings.http_port,
        log_level=settings.log_level.lower(),
        timeout_graceful_shutdown=30,
    )
