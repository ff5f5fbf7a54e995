"""Resolving callback hosts, and refusing the addresses callbacks may not reach.

Every callback is checked twice against :class:`~gateway.aggregator.callback_addresses.
AddressPolicy`: at submit (:meth:`CallbackGuard.check`: a ``422`` naming
``callback_url``) and for every connection the sender opens. For the second, the guard
*is* the aiohttp resolver of :class:`~gateway.aggregator.callbacks.HttpSender`: aiohttp
connects only to the addresses :meth:`CallbackGuard.resolve` returns, each one checked
in that same call, and keeps the name for the ``Host`` header and for TLS (SNI and the
certificate check). So a name that resolved to a public address at submit and resolves
inside the bus's network at delivery (DNS rebinding) is refused at delivery, before any
connection. aiohttp does not ask its resolver about IP literal hosts: the sender checks
those with :meth:`CallbackGuard.check_literal` first.

Names are resolved by the operating system (``getaddrinfo``), which also turns odd
numeric forms (``2130706433``, ``0x7f.1``, ``127.1``, ``017700000001``) into addresses:
the policy judges what a socket would connect to, never the string.
"""

from __future__ import annotations

import asyncio
import socket
from collections.abc import Iterable, Mapping, Sequence
from ipaddress import ip_address
from typing import Any

import structlog
import yarl
from aiohttp.abc import AbstractResolver, ResolveResult
from aiohttp.resolver import ThreadedResolver

from gateway.aggregator.callback_addresses import (
    AddressPolicy,
    IPAddress,
    IPNetwork,
    canonical,
)
from gateway.aggregator.callback_url import FIELD, check_callback_url
from gateway.core.errors import SchemaViolation

__all__ = ["CallbackGuard", "CallbackRefused", "StaticResolver", "numeric_host"]

log = structlog.get_logger(__name__)

_NUMERIC_FLAGS = socket.AI_NUMERICHOST | socket.AI_NUMERICSERV

Endpoint = tuple[IPAddress, int]


class CallbackRefused(Exception):
    """A callback would connect to an address the policy refuses; retrying cannot help."""


class CallbackGuard(AbstractResolver):
    """Resolves callback hosts and lets through only the addresses the policy allows.

    ``allowed_hosts``: the operator's host-name allow-list (``SMEVBUS_CALLBACK_HOSTS``,
    empty: any name); ``networks``: the networks callbacks may reach although special
    (``SMEVBUS_CALLBACK_NETWORKS``); ``own``: the gateway's own (host, port) endpoints,
    resolved once on first use; ``resolver``: where names are looked up (default: the
    operating system's, :class:`aiohttp.resolver.ThreadedResolver`); ``timeout``: how
    long a name may take to resolve at submit.
    """

    def __init__(
        self,
        *,
        allowed_hosts: Sequence[str] = (),
        networks: Sequence[IPNetwork] = (),
        own: Sequence[tuple[str, int]] = (),
        resolver: AbstractResolver | None = None,
        timeout: float = 5.0,
    ) -> None:
        self.allowed_hosts = tuple(allowed_hosts)
        self.networks = tuple(networks)
        self.timeout = timeout
        self._own_hosts = tuple(own)
        self._own_endpoints: frozenset[Endpoint] | None = None
        self._resolver = resolver

    async def check(self, url: str) -> str:
        """``url`` if a callback may go there now; else :class:`SchemaViolation` naming
        ``callback_url`` and saying which address is refused, why, and which setting
        would allow it (the submit-time check)."""
        check_callback_url(url, self.allowed_hosts)
        try:
            target = yarl.URL(url)
            host, port = target.raw_host, target.port
        except ValueError as exc:
            raise _refused(f"callback_url is not a valid URL: {exc}") from None
        if not host or port is None:
            raise _refused("callback_url must name a host")
        await self._own()  # resolved once, outside the lookup's timeout
        try:
            async with asyncio.timeout(self.timeout):
                await self.resolve(host, port, socket.AF_UNSPEC)
        except CallbackRefused as exc:
            raise _refused(str(exc)) from None
        except TimeoutError:
            raise _refused(
                f"callback_url host {host!r} did not resolve within {self.timeout:g} s; "
                "retry, or name a host whose DNS answers"
            ) from None
        except OSError as exc:
            raise _refused(
                f"callback_url host {host!r} does not resolve ({exc.strerror or exc}); "
                "name a host this gateway can resolve"
            ) from None
        return url

    async def check_literal(self, host: str, port: int) -> None:
        """Refuse (:class:`CallbackRefused`) an IP literal host the policy does not allow,
        or that is no valid IP address; parsed, never looked up."""
        results = numeric_host(host, port)
        if results is None:
            raise CallbackRefused(f"callback_url host {host!r} is not a valid IP address")
        self._refuse(host, results, await self._own())

    async def resolve(
        self, host: str, port: int = 0, family: socket.AddressFamily = socket.AF_INET
    ) -> list[ResolveResult]:
        """The addresses of ``host``, every one allowed; :class:`CallbackRefused` if one
        is not, :class:`OSError` if ``host`` does not resolve."""
        results = await self._lookup(host, port, family)
        self._refuse(host, results, await self._own())
        return results

    async def close(self) -> None:
        if self._resolver is not None:
            await self._resolver.close()

    # --- inside -------------------------------------------------------------------------

    async def _lookup(
        self, host: str, port: int, family: socket.AddressFamily
    ) -> list[ResolveResult]:
        if self._resolver is None:  # made here: it belongs to the running loop
            self._resolver = ThreadedResolver()
        results = await self._resolver.resolve(host, port, family)
        if not results:
            raise OSError(f"{host} has no address")
        return results

    async def _own(self) -> frozenset[Endpoint]:
        if self._own_endpoints is None:
            found: set[Endpoint] = set()
            for host, port in self._own_hosts:
                try:
                    async with asyncio.timeout(self.timeout):
                        results = await self._lookup(host, port, socket.AF_UNSPEC)
                except (OSError, TimeoutError) as exc:
                    log.warning(
                        "callback_own_host_unresolved",
                        host=host,
                        error=str(exc) or type(exc).__name__,
                    )
                    continue
                found.update((canonical(ip_address(r["host"])), port) for r in results)
            self._own_endpoints = frozenset(found)
        return self._own_endpoints

    def _refuse(
        self, host: str, results: Sequence[ResolveResult], own: frozenset[Endpoint]
    ) -> None:
        policy = AddressPolicy(self.networks, own)
        for result in results:
            address = ip_address(result["host"])
            why = policy.refusal(address, result["port"])
            if why is None:
                continue
            if _is_literal(host, address):
                raise CallbackRefused(f"callback_url points at {why}")
            several = (
                f" (one of its {len(results)} addresses; every one must be allowed)"
                if len(results) > 1
                else ""
            )
            raise CallbackRefused(f"callback_url host {host!r} resolves to {why}{several}")


class StaticResolver(AbstractResolver):
    """Names resolved from a table, never from DNS: tests and demos.

    ``names`` maps a lower-case name to its addresses (``{"portal.example":
    ["192.0.2.7"]}``) and may be changed between lookups (DNS rebinding, in tests).
    Numeric hosts are parsed as ``getaddrinfo`` parses them; any other name does not
    resolve (:class:`socket.gaierror`).
    """

    def __init__(self, names: Mapping[str, Sequence[str]] | None = None) -> None:
        self.names: dict[str, list[str]] = {k: list(v) for k, v in (names or {}).items()}

    async def resolve(
        self, host: str, port: int = 0, family: socket.AddressFamily = socket.AF_INET
    ) -> list[ResolveResult]:
        numeric = numeric_host(host, port, family)
        if numeric is not None:
            return numeric
        addresses = self.names.get(host.lower().rstrip("."), [])
        results = [
            result for address in addresses for result in numeric_host(address, port, family) or ()
        ]
        if not results:
            raise socket.gaierror(socket.EAI_NONAME, "Name or service not known")
        return results

    async def close(self) -> None:
        pass


def numeric_host(
    host: str, port: int, family: socket.AddressFamily = socket.AF_UNSPEC
) -> list[ResolveResult] | None:
    """The addresses of a numeric ``host`` as ``getaddrinfo`` parses it (``127.1`` ->
    ``127.0.0.1``), without any lookup; ``None`` when ``host`` is not numeric."""
    try:
        infos = socket.getaddrinfo(host, port, family, socket.SOCK_STREAM, 0, _NUMERIC_FLAGS)
    except (socket.gaierror, UnicodeError, ValueError):
        return None
    return list(_results(host, infos))


def _results(host: str, infos: Iterable[tuple[Any, ...]]) -> Iterable[ResolveResult]:
    for family, _, proto, _, sockaddr in infos:
        address = str(sockaddr[0])
        if family == socket.AF_INET6 and len(sockaddr) > 3 and sockaddr[3]:
            address = f"{address}%{sockaddr[3]}"  # the scope of a link-local address
        yield ResolveResult(
            hostname=host,
            host=address,
            port=int(sockaddr[1]),
            family=family,
            proto=proto,
            flags=_NUMERIC_FLAGS,
        )


def _is_literal(host: str, address: IPAddress) -> bool:
    try:
        return canonical(ip_address(host.strip("[]"))) == canonical(address)
    except ValueError:
        return False


def _refused(message: str) -> SchemaViolation:
    return SchemaViolation(message, field=FIELD)
