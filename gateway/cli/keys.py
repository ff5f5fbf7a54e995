"""Keys and signatures: ``keys init`` (the dev PKI), ``sign``, ``verify``."""

from __future__ import annotations

import sys
from enum import StrEnum
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

from gateway.cli.app import app, console, err, fail, keys_app
from gateway.config import REPO_ROOT, Settings
from gateway.core.clock import SystemClock
from gateway.core.errors import InternalError, SmevbusError
from gateway.crypto.profiles import SignatureProfile

if TYPE_CHECKING:
    from gateway.crypto.devpki import KeyType


class KeyKind(StrEnum):
    EC = "ec"
    RSA = "rsa"
    GOST2012_256 = "gost2012-256"

    @property
    def key_type(self) -> KeyType:
        kinds: dict[KeyKind, KeyType] = {
            KeyKind.EC: "ec",
            KeyKind.RSA: "rsa",
            KeyKind.GOST2012_256: "gost2012-256",
        }
        return kinds[self]


KeysDir = Annotated[Path, typer.Option("--dir", "--keys", help="Keys directory.")]


@keys_app.command("init")
def keys_init(
    keys_dir: KeysDir = REPO_ROOT / "keys",
    registry: Annotated[Path | None, typer.Option(help="Registry TOML.")] = None,
    algorithm: Annotated[
        KeyKind | None,
        typer.Option(
            "--algorithm",
            "--key-type",
            help="Key type of a new CA and of the participants: EC P-256 (the default), "
            "RSA 2048, or GOST R 34.10-2012 256-bit (needs OpenSSL's gost engine). With "
            "an existing CA, new participants get its type unless this is given.",
        ),
    ] = None,
    participant_algorithm: Annotated[
        list[str] | None,
        typer.Option(
            "--participant-algorithm",
            metavar="MNEMONIC=ALGORITHM",
            help="Another key type for one participant (a mixed registry; GOST keys need "
            "a GOST CA, which also certifies ec and rsa keys); repeatable.",
        ),
    ] = None,
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
    signing and as its TLS client certificate), the gateway's TLS server certificate
    (not under a GOST CA).

    Written once: existing files are kept, only missing certificates are added.
    """
    from gateway.bus import load_registry
    from gateway.crypto import gost
    from gateway.crypto.devpki import TLS_SERVER, init_dev_pki

    settings = Settings(keys_dir=keys_dir)
    if registry is not None:
        settings = settings.model_copy(update={"registry_file": registry})
    try:
        reg = load_registry(settings)
    except SmevbusError as exc:
        raise fail(exc) from None
    participants = {p.mnemonic: p.name for p in reg.participants}
    participants[reg.bus_mnemonic] = "smevbus"
    overrides = _participant_algorithms(participant_algorithm or [], participants)
    existed = {p for p in keys_dir.glob("*.pem")} if keys_dir.exists() else set()
    try:
        paths = init_dev_pki(
            keys_dir,
            participants,
            key_type=None if algorithm is None else algorithm.key_type,
            key_types=overrides,
            tls_hosts=tls_host or (),
            clock=SystemClock(),
        )
    except (ValueError, gost.GostError) as exc:
        raise fail(InternalError(f"cannot make the dev PKI: {exc}")) from None
    made = [p for p in paths if p not in existed]
    console.print(
        f"dev PKI in {keys_dir}: {len(made)} file(s) written, {len(paths) - len(made)} kept "
        f"({', '.join(sorted(participants))})"
    )
    if all(p.stem != f"{TLS_SERVER}.cert" for p in paths):
        err.print(
            "no TLS server certificate under a GOST CA (Python's TLS has no GOST); "
            "terminate TLS in front of the gateway, or use an ec/rsa keys directory for TLS"
        )


def _participant_algorithms(pairs: list[str], participants: dict[str, str]) -> dict[str, KeyType]:
    """``MNEMONIC=ALGORITHM`` options as a mapping; unknown names and types refused."""
    known = {k.value: k.key_type for k in KeyKind}
    out: dict[str, KeyType] = {}
    for pair in pairs:
        mnemonic, _, kind = pair.partition("=")
        if mnemonic not in participants or kind not in known:
            raise typer.BadParameter(
                f"{pair!r}: want MNEMONIC=ALGORITHM with MNEMONIC one of "
                f"{', '.join(sorted(participants))} and ALGORITHM one of {', '.join(known)}",
                param_hint="--participant-algorithm",
            )
        out[mnemonic] = known[kind]
    return out


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
