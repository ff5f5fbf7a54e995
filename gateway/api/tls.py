"""TLS of ``smevbus serve``: uvicorn's options from settings, and the client certificate.

uvicorn checks a participant's TLS client certificate against the client CA but does
not hand it to the app. :class:`TlsHttpToolsProtocol` (uvicorn's httptools protocol,
passed as its ``http`` class; :class:`TlsH11Protocol` for h11) adds the ASGI TLS
extension to each request's scope
(``scope["extensions"]["tls"]["client_cert_chain"]``, PEM, the client's certificate
first); :func:`client_certificate` reads it back, from any ASGI server that sets it.
The router then requires that certificate to belong to the participant that signed
(:func:`gateway.router.intake.check_tls_client`).
"""

from __future__ import annotations

import asyncio
import functools
import ssl
from typing import Any

from cryptography import x509
from uvicorn._types import ASGI3Application, ASGIReceiveCallable, ASGISendCallable, Scope
from uvicorn.protocols.http.h11_impl import H11Protocol
from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

from gateway.config import Settings
from gateway.crypto.certificates import CACHED_CERTIFICATES

_CERT_REQS = {
    "required": ssl.CERT_REQUIRED,
    "optional": ssl.CERT_OPTIONAL,
    "none": ssl.CERT_NONE,
}
#: ``ssl.SSLObject.version()`` -> the ASGI TLS extension's ``tls_version`` number.
_TLS_VERSIONS = {"TLSv1.2": 0x0303, "TLSv1.3": 0x0304}


def uvicorn_tls(settings: Settings) -> dict[str, Any]:
    """The keyword arguments of ``uvicorn.run`` for the settings' TLS (none: plain HTTP)."""
    if settings.tls_cert_file is None:
        return {}
    ca = settings.tls_client_ca_file
    return {
        "ssl_certfile": str(settings.tls_cert_file),
        "ssl_keyfile": str(settings.tls_key_file),
        "ssl_ca_certs": None if ca is None else str(ca),
        "ssl_cert_reqs": _CERT_REQS[settings.tls_client_cert],
        # By name: ``serve --workers N`` hands the options to worker processes.
        "http": f"{__name__}:{TlsHttpToolsProtocol.__name__}",
    }


class TlsH11Protocol(H11Protocol):
    """uvicorn's h11 protocol, with the ASGI TLS extension in every request's scope."""

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        ssl_object = transport.get_extra_info("ssl_object")
        if isinstance(ssl_object, ssl.SSLObject | ssl.SSLSocket):
            self.app = _with_tls(self.config.loaded_app, tls_extension(ssl_object))


class TlsHttpToolsProtocol(HttpToolsProtocol):
    """uvicorn's httptools protocol, with the ASGI TLS extension in every request's scope."""

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        ssl_object = transport.get_extra_info("ssl_object")
        if isinstance(ssl_object, ssl.SSLObject | ssl.SSLSocket):
            self.app = _with_tls(self.config.loaded_app, tls_extension(ssl_object))


def tls_extension(ssl_object: ssl.SSLObject | ssl.SSLSocket) -> dict[object, object]:
    """The ASGI TLS extension of a connection (the handshake is done, the client's
    certificate, if any, verified against the client CA)."""
    der = ssl_object.getpeercert(binary_form=True)
    version = ssl_object.version()
    return {
        "server_cert": None,
        "client_cert_chain": [] if der is None else [ssl.DER_cert_to_PEM_cert(der)],
        "client_cert_name": None,
        "client_cert_error": None,
        "tls_version": None if version is None else _TLS_VERSIONS.get(version),
        "cipher_suite": None,
    }


def _with_tls(app: ASGI3Application, tls: dict[object, object]) -> ASGI3Application:
    async def with_tls(scope: Scope, receive: ASGIReceiveCallable, send: ASGISendCallable) -> None:
        if scope["type"] == "http":
            extensions = dict(scope.get("extensions") or {})
            extensions["tls"] = tls
            scope["extensions"] = extensions
        await app(scope, receive, send)

    return with_tls


def client_certificate(scope: Any) -> x509.Certificate | None:
    """The TLS client certificate the ASGI server reports in ``scope``, if any."""
    extensions = scope.get("extensions")
    if not extensions:  # plain HTTP
        return None
    tls = extensions.get("tls") or {}
    chain = tls.get("client_cert_chain") or ()
    for pem in chain:
        return _certificate(pem)
    return None


@functools.lru_cache(maxsize=CACHED_CERTIFICATES)
def _certificate(pem: str) -> x509.Certificate:
    """A connection's client certificate, read once for all its requests (and once for
    every connection made with the same certificate: the same PEM, the same DER)."""
    return x509.load_pem_x509_certificate(pem.encode())
