"""TLS client certificates on /ws: the router's check, the ASGI scope, the settings.

The whole path over a real ``smevbus serve`` with TLS is in
``tests/integration/test_mutual_tls.py``.
"""

from __future__ import annotations

import ssl
from pathlib import Path

import pytest
from cryptography import x509
from pydantic import ValidationError

from adapters.process import _gateway_tls
from gateway.api.tls import TlsHttpToolsProtocol, client_certificate, uvicorn_tls
from gateway.config import Settings
from gateway.testing.bus import (
    Bus,
    Reply,
    bus_pki,
    read_reply,
    send_request_body,
    soap,
)
from gateway.transport.base import Direction


def certificate(bus: Bus, mnemonic: str) -> x509.Certificate:
    return x509.load_pem_x509_certificate(bus.pki.cert_pem(mnemonic))


async def send_with_tls(bus: Bus, raw: bytes, tls_client: x509.Certificate) -> Reply:
    return read_reply(*await bus.router.handle(raw, tls_client=tls_client))


async def test_a_request_over_its_signers_tls_certificate_is_served(bus: Bus) -> None:
    raw = soap(send_request_body(bus.pki.signer("PORTAL")))
    status, _ = await bus.router.handle(raw, tls_client=certificate(bus, "PORTAL"))
    assert status == 200
    assert await bus.depth(Direction.REQUESTS, "ZAGS") == 1


async def test_a_request_over_another_participants_tls_certificate_is_refused(bus: Bus) -> None:
    raw = soap(send_request_body(bus.pki.signer("PORTAL")))
    reply = await send_with_tls(bus, raw, certificate(bus, "ZAGS"))
    assert (reply.status, reply.code) == (500, "access_denied")
    assert reply.description is not None
    assert "TLS client certificate" in reply.description
    assert "belongs to ZAGS, but the message is signed by PORTAL" in reply.description
    assert await bus.depth(Direction.REQUESTS, "ZAGS") == 0


async def test_a_tls_certificate_of_no_participant_is_refused(bus: Bus) -> None:
    raw = soap(send_request_body(bus.pki.signer("PORTAL")))
    reply = await send_with_tls(bus, raw, bus.pki.stranger.cert)
    assert reply.code == "access_denied"
    assert "belongs to no registered participant" in (reply.description or "")


def test_the_client_certificate_is_read_from_the_asgi_tls_extension() -> None:
    cert_pem = bus_pki().cert_pem("ZAGS").decode()
    scope = {"type": "http", "extensions": {"tls": {"client_cert_chain": [cert_pem]}}}
    found = client_certificate(scope)
    assert found is not None
    assert found == x509.load_pem_x509_certificate(cert_pem.encode())
    assert client_certificate({"type": "http", "extensions": {"tls": {}}}) is None
    assert client_certificate({"type": "http"}) is None
    assert client_certificate({"type": "http", "extensions": {}}) is None


def test_a_client_certificate_is_read_once_for_every_request_that_presents_it() -> None:
    zags, portal = (bus_pki().cert_pem(name).decode() for name in ("ZAGS", "PORTAL"))

    def scope(pem: str) -> dict[str, object]:
        return {"type": "http", "extensions": {"tls": {"client_cert_chain": [pem]}}}

    first = client_certificate(scope(zags))
    assert client_certificate(scope(zags)) is first
    other = client_certificate(scope(portal))
    assert other is not None
    assert other != first
    assert other == x509.load_pem_x509_certificate(portal.encode())


def test_serve_gets_uvicorn_tls_options_from_the_settings(tmp_path: Path) -> None:
    assert uvicorn_tls(Settings()) == {}
    options = uvicorn_tls(
        Settings(
            tls_cert_file=tmp_path / "server.pem",
            tls_key_file=tmp_path / "server.key",
            tls_client_ca_file=tmp_path / "ca.pem",
        )
    )
    assert options["ssl_cert_reqs"] == ssl.CERT_REQUIRED
    assert options["ssl_ca_certs"] == str(tmp_path / "ca.pem")
    module, name = options["http"].split(":")
    assert getattr(__import__(module, fromlist=[name]), name) is TlsHttpToolsProtocol
    optional = Settings(
        tls_cert_file=tmp_path / "s",
        tls_key_file=tmp_path / "k",
        tls_client_ca_file=tmp_path / "ca",
        tls_client_cert="optional",
    )
    assert uvicorn_tls(optional)["ssl_cert_reqs"] == ssl.CERT_OPTIONAL
    assert Settings(
        tls_cert_file=tmp_path / "s", tls_key_file=tmp_path / "k", tls_client_cert="none"
    ).base_url.startswith("https://")


@pytest.mark.parametrize(
    ("settings", "complaint"),
    [
        ({"tls_cert_file": "server.pem"}, "SMEVBUS_TLS_KEY_FILE"),
        ({"tls_cert_file": "s", "tls_key_file": "k"}, "SMEVBUS_TLS_CLIENT_CA_FILE"),
        ({"client_tls_cert_file": "c"}, "SMEVBUS_CLIENT_TLS_KEY_FILE"),
    ],
)
def test_incomplete_tls_settings_are_refused(settings: dict[str, str], complaint: str) -> None:
    with pytest.raises(ValidationError, match=complaint):
        Settings(**settings)  # type: ignore[arg-type]


def test_an_adapter_presents_its_client_certificate_to_an_https_gateway() -> None:
    keys = bus_pki().keys_dir
    assert _gateway_tls(Settings()) is None
    context = _gateway_tls(
        Settings(
            client_tls_ca_file=keys / "ca.cert.pem",
            client_tls_cert_file=keys / "ZAGS.cert.pem",
            client_tls_key_file=keys / "ZAGS.key.pem",
        )
    )
    assert context is not None
    assert context.verify_mode == ssl.CERT_REQUIRED
    assert [c["subject"] for c in context.get_ca_certs()] == [
        ((("commonName", "smevbus dev root CA"),),)
    ]
