"""Which addresses a result callback may reach: the address half of the SSRF guard, pure.

The gateway POSTs results from inside the bus's network, so a ``callback_url`` could make
it call what only the bus reaches: its own ``/ws``, a database, the cloud metadata
service at 169.254.169.254. The host is resolved first (at submit and again for each
connection, :mod:`gateway.aggregator.callback_guard`); then every address it resolves to
must pass :meth:`AddressPolicy.refusal`:

* special-use addresses are refused: loopback, private (RFC 1918, IPv6 unique local),
  link-local, multicast, unspecified, carrier-grade NAT, benchmarking, documentation and
  reserved ranges, also in the IPv6 forms that carry an IPv4 address (IPv4-mapped
  ``::ffff:127.0.0.1``, IPv4-compatible ``::127.0.0.1``, NAT64 ``64:ff9b::/96``, 6to4
  ``2002::/16``, Teredo) - unless they lie in a network the operator lists
  (``SMEVBUS_CALLBACK_NETWORKS``);
* the gateway's own endpoints (address and port) are refused even when public, unless the
  operator lists that very address (a ``/32`` or ``/128`` network): a portal that shares
  the gateway's ingress address. A wider listed network does not let a callback reach
  the gateway.
"""

from __future__ import annotations

from collections.abc import Collection, Iterable
from dataclasses import dataclass
from ipaddress import IPv4Address, IPv4Network, IPv6Address, IPv6Network, ip_network
from typing import Final

IPAddress = IPv4Address | IPv6Address
IPNetwork = IPv4Network | IPv6Network

NETWORKS_SETTING: Final = "SMEVBUS_CALLBACK_NETWORKS"

_PRIVATE = "a private address (RFC 1918)"
_DOCUMENTATION = "a documentation address"

_SPECIAL_V4: Final[tuple[tuple[IPv4Network, str], ...]] = tuple(
    (IPv4Network(net), why)
    for net, why in (
        ("0.0.0.0/8", "an unspecified ('this network') address"),
        ("10.0.0.0/8", _PRIVATE),
        ("100.64.0.0/10", "a carrier-grade NAT address (RFC 6598)"),
        ("127.0.0.0/8", "a loopback address"),
        ("169.254.0.0/16", "a link-local address (cloud metadata services answer there)"),
        ("172.16.0.0/12", _PRIVATE),
        ("192.0.0.0/24", "an IETF protocol assignment (RFC 6890)"),
        ("192.0.2.0/24", _DOCUMENTATION),
        ("192.88.99.0/24", "a 6to4 relay anycast address (RFC 7526)"),
        ("192.168.0.0/16", _PRIVATE),
        ("198.18.0.0/15", "a benchmarking address (RFC 2544)"),
        ("198.51.100.0/24", _DOCUMENTATION),
        ("203.0.113.0/24", _DOCUMENTATION),
        ("224.0.0.0/4", "a multicast address"),
        ("240.0.0.0/4", "a reserved or broadcast address"),
    )
)

_SPECIAL_V6: Final[tuple[tuple[IPv6Network, str], ...]] = tuple(
    (IPv6Network(net), why)
    for net, why in (
        ("::/128", "the unspecified address"),
        ("::1/128", "the loopback address"),
        ("::ffff:0:0:0/96", "an IPv4-translated address (RFC 2765)"),
        ("64:ff9b:1::/48", "a local-use NAT64 address (RFC 8215)"),
        ("100::/64", "a discard-only address (RFC 6666)"),
        ("2001:2::/48", "a benchmarking address (RFC 5180)"),
        ("2001:db8::/32", _DOCUMENTATION),
        ("fc00::/7", "a unique local address (RFC 4193), IPv6's private range"),
        ("fe80::/10", "a link-local address"),
        ("fec0::/10", "a site-local address"),
        ("ff00::/8", "a multicast address"),
    )
)

_COMPATIBLE: Final = IPv6Network("::/96")
_NAT64: Final = IPv6Network("64:ff9b::/96")


def canonical(address: IPAddress) -> IPAddress:
    """``address`` as a socket reaches it: an IPv4-mapped address as its IPv4 address,
    an IPv6 address without its scope (``fe80::1%eth0`` -> ``fe80::1``)."""
    if isinstance(address, IPv6Address):
        if address.ipv4_mapped is not None:
            return address.ipv4_mapped
        return IPv6Address(int(address))
    return address


def special_use(address: IPAddress) -> str | None:
    """What special-use range ``address`` lies in (``"a loopback address"``), or ``None``
    for an ordinary (global unicast) address."""
    address = canonical(address)
    if isinstance(address, IPv4Address):
        return next((why for net, why in _SPECIAL_V4 if address in net), None)
    why = next((why for net, why in _SPECIAL_V6 if address in net), None)
    if why is not None:
        return why
    for form, embedded in _embedded_ipv4(address):
        inner = special_use(embedded)
        if inner is not None:
            return f"{form} of {embedded}, {inner}"
    return None


def _embedded_ipv4(address: IPv6Address) -> Iterable[tuple[str, IPv4Address]]:
    """The IPv4 addresses an IPv6 address carries, with the name of the form."""
    if address in _COMPATIBLE:
        yield "the IPv4-compatible form", IPv4Address(int(address))
    if address in _NAT64:
        yield "the NAT64 form", IPv4Address(int(address) & 0xFFFFFFFF)
    if address.sixtofour is not None:
        yield "the 6to4 form", address.sixtofour
    if address.teredo is not None:
        yield "the Teredo form", address.teredo[1]  # (server, client): packets go to the client


@dataclass(frozen=True)
class AddressPolicy:
    """Where callbacks may connect: ``networks`` the operator lists, besides the public
    Internet, and the gateway's ``own`` endpoints (address, port) that stay refused."""

    networks: tuple[IPNetwork, ...] = ()
    own: Collection[tuple[IPAddress, int]] = frozenset()

    def refusal(self, address: IPAddress, port: int) -> str | None:
        """Why a callback may not connect to ``address`` port ``port``, or ``None``.

        The reason starts with the address and says which setting would allow it:
        ``"127.0.0.1, a loopback address; ..."``.
        """
        address = canonical(address)
        why = special_use(address)
        if (address, port) in self.own and not self._listed_exactly(address):
            shared = (
                ""
                if why is not None
                else " (for a portal that shares this address, the bus operator may list "
                f"exactly {ip_network(address)} in {NETWORKS_SETTING})"
            )
            return (
                f"{address} port {port}, this gateway itself; the gateway does not call "
                f"itself back{shared}"
            )
        if why is None or any(address in net for net in self.networks):
            return None
        return (
            f"{address}, {why}; callbacks reach such addresses only in networks the bus "
            f"operator lists in {NETWORKS_SETTING}"
        )

    def _listed_exactly(self, address: IPAddress) -> bool:
        return any(net.num_addresses == 1 and address in net for net in self.networks)
