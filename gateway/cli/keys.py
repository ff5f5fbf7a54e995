"""Keys and signatures: ``keys init`` (the dev PKI), ``sign``, ``verify``."""

from __future__ import annotations

import sys
from enum import StrEnum
from pathlib import Path
from typing import Annotated, Literal

import typer

from gateway.cli.app import app, console, fail, keys_app
from gateway.config import REPO_ROOT, Settings
from gateway.core.clock import SystemClock
from gateway.core.errors import SmevbusError
from gateway.crypto.profiles import SignatureProfile


class KeyKind(StrEnum):
    EC = "ec"
    RSA = "rsa"


KeysDir = Annotated[Path, typer.Option("--dir", "--keys", help="Keys directory.")]


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
        raise fail(exc) from None
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
        raise fail(exc) from None
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
        raise fail(exc) from None
    for where, subject in results:
        console.print(f"[green]valid[/] {where}: signed by {subject}")
