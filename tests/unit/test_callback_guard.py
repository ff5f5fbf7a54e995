"""The result callbacks' SSRF guard.

The address policy is pure (addresses in, a reason out). The submit-time check is
driven through the REST API (``422`` naming ``callback_url``); the connect-time check
through the real dispatcher and :class:`HttpSender` against a real listener on
127.0.0.1 that counts every TCP connection made to it. Names resolve through a
:class:`StaticResolver`; hosts that are numeric are parsed, never looked up: no test
here asks DNS.
"""

from __future__ import annotations

import asyncio
import socket
from collections.abc import Sequence
from ipaddress import ip_address, ip_network

import pytest
import structlog
import yaml
from aiohttp.abc import AbstractResolver, ResolveResult

from gateway.aggregator.callback_addresses import AddressPolicy, special_use
from gateway.aggregator.callback_guard import (
    CallbackGuard,
    CallbackRefused,
    StaticResolver,
)
from gateway.aggregator.callbacks import CallbackDispatcher, HttpSender
from gateway.api.views import callback_body
from gateway.bus import callback_guard
from gateway.config import REPO_ROOT, Settings
from gateway.store import Journal
from gateway.store.callback_outbox import CallbackOutbox
from gateway.store.callbacks import Callback, CallbackState
from tests.unit.callback_fixtures import PUBLIC_NAMES, PUBLIC_V4, PUBLIC_V6, CallbackReceiver
from tests.unit.test_callbacks import BASE_URL, Setup
from tests.unit.test_callbacks import setup as setup
from tests.unit.test_rest_api import (
    AUTH,
    BODY,
    FakeAggregator,
    _client,
    aggregator,
    assert_problem,
    journal,
)

__all__ = ["aggregator", "journal"]  # the REST API test fixtures, re-used

#: The gateway's public address in these tests (``public_url`` https://bus.example).
BUS_V4 = "93.184.215.20"
NAMES = {
    **PUBLIC_NAMES,
    "bus.example": [BUS_V4],
    "localhost": ["127.0.0.1", "::1"],
    "metadata.example": ["169.254.169.254"],
    "intranet.example": ["10.20.0.7"],
    "mixed.example": [PUBLIC_V4, "192.168.1.10"],
}
NETWORKS = "SMEVBUS_CALLBACK_NETWORKS"


def guard(*networks: str, own: Sequence[tuple[str, int]] = ()) -> CallbackGuard:
    """The guard with ``networks`` listed, resolving :data:`NAMES`."""
    return CallbackGuard(
        networks=[ip_network(n) for n in networks], own=own, resolver=StaticResolver(NAMES)
    )


# --- the address policy (pure) ---------------------------------------------------------


@pytest.mark.parametrize(
    ("address", "says"),
    [
        ("127.0.0.1", "loopback"),
        ("127.255.255.254", "loopback"),
        ("::1", "loopback"),
        ("10.1.2.3", "private address (RFC 1918)"),
        ("172.16.0.1", "private address (RFC 1918)"),
        ("172.31.255.255", "private address (RFC 1918)"),
        ("192.168.0.1", "private address (RFC 1918)"),
        ("fd12:3456::1", "unique local address (RFC 4193)"),
        ("fc00::1", "unique local address (RFC 4193)"),
        ("169.254.169.254", "link-local"),
        ("fe80::1", "link-local"),
        ("fe80::1%1", "link-local"),
        ("224.0.0.1", "multicast"),
        ("239.255.255.250", "multicast"),
        ("ff02::1", "multicast"),
        ("0.0.0.0", "unspecified"),
        ("0.1.2.3", "unspecified"),
        ("::", "unspecified"),
        ("100.64.0.1", "carrier-grade NAT"),
        ("198.18.0.1", "benchmarking"),
        ("198.19.255.255", "benchmarking"),
        ("240.0.0.1", "reserved"),
        ("255.255.255.255", "broadcast"),
        ("192.0.2.1", "documentation"),
        ("203.0.113.9", "documentation"),
        ("2001:db8::1", "documentation"),
        ("::ffff:127.0.0.1", "127.0.0.1, a loopback address"),
        ("::ffff:169.254.169.254", "169.254.169.254, a link-local address"),
        ("::127.0.0.1", "the IPv4-compatible form of 127.0.0.1, a loopback"),
        ("64:ff9b::a9fe:a9fe", "the NAT64 form of 169.254.169.254, a link-local"),
        ("2002:c0a8:101::1", "the 6to4 form of 192.168.1.1, a private"),
        ("2001:0:4136:e378:8000:63bf:80ff:fffe", "the Teredo form of 127.0.0.1, a loopback"),
    ],
)
def test_special_use_addresses_are_refused_naming_why_and_the_setting(
    address: str, says: str
) -> None:
    why = AddressPolicy().refusal(ip_address(address), 443)
    assert why is not None
    assert says in why
    assert NETWORKS in why


@pytest.mark.parametrize(
    "address",
    [
        PUBLIC_V4,
        PUBLIC_V6,
        "8.8.8.8",
        "11.0.0.1",
        "172.32.0.1",
        "100.128.0.1",
        "::ffff:8.8.8.8",
        "2002:808:808::1",  # 6to4 of 8.8.8.8
        "64:ff9b::808:808",  # NAT64 of 8.8.8.8
    ],
)
def test_public_addresses_pass(address: str) -> None:
    assert special_use(ip_address(address)) is None
    assert AddressPolicy().refusal(ip_address(address), 443) is None


def test_listed_networks_let_their_special_addresses_through_and_no_others() -> None:
    policy = AddressPolicy(networks=(ip_network("10.20.0.0/16"), ip_network("127.0.0.0/8")))
    assert policy.refusal(ip_address("10.20.0.7"), 443) is None
    assert policy.refusal(ip_address("::ffff:10.20.0.7"), 443) is None  # the same socket
    assert policy.refusal(ip_address("127.0.0.1"), 8443) is None
    assert policy.refusal(ip_address("10.21.0.7"), 443) is not None
    assert policy.refusal(ip_address("::1"), 443) is not None  # each family is listed
    assert policy.refusal(ip_address("169.254.169.254"), 80) is not None


def test_the_gateways_own_endpoint_is_refused_unless_its_address_is_listed_alone() -> None:
    own = {(ip_address("127.0.0.1"), 8080), (ip_address(BUS_V4), 443)}
    wide = AddressPolicy(networks=(ip_network("127.0.0.0/8"), ip_network("93.0.0.0/8")), own=own)
    for address in ("127.0.0.1", "::ffff:127.0.0.1"):
        why = wide.refusal(ip_address(address), 8080)
        assert why is not None
        assert "127.0.0.1 port 8080, this gateway itself" in why
    assert wide.refusal(ip_address("127.0.0.1"), 8081) is None  # another port: listed
    why = wide.refusal(ip_address(BUS_V4), 443)  # public, and still the gateway
    assert why is not None
    assert "this gateway itself" in why
    assert f"list exactly {BUS_V4}/32 in {NETWORKS}" in why  # e.g. a shared ingress
    alone = AddressPolicy(networks=(ip_network(f"{BUS_V4}/32"),), own=own)
    assert alone.refusal(ip_address(BUS_V4), 443) is None


def test_settings_parse_callback_networks(monkeypatch: pytest.MonkeyPatch) -> None:
    assert Settings().callback_networks == ()  # the default: public addresses only
    monkeypatch.setenv(NETWORKS, "10.20.0.0/16, fd00::/8")
    assert Settings().callback_networks == (ip_network("10.20.0.0/16"), ip_network("fd00::/8"))
    monkeypatch.setenv(NETWORKS, '["127.0.0.0/8"]')
    assert Settings().callback_networks == (ip_network("127.0.0.0/8"),)
    monkeypatch.setenv(NETWORKS, "10.20.0.1/16")  # host bits set: a typo, not a network
    with pytest.raises(ValueError, match="callback_networks"):
        Settings()


# --- at submit: 422 naming callback_url ---------------------------------------------------


async def submit(aggregator: FakeAggregator, journal: Journal, g: CallbackGuard, url: str) -> int:
    async with _client(aggregator, journal, g) as client:
        resp = await client.post(
            "/api/v1/service-requests", json={**BODY, "callback_url": url}, headers=AUTH
        )
    return resp.status_code


async def refused_at_submit(
    aggregator: FakeAggregator, journal: Journal, g: CallbackGuard, url: str
) -> str:
    """The problem's detail of submitting ``url``; asserts a 422 naming ``callback_url``."""
    async with _client(aggregator, journal, g) as client:
        resp = await client.post(
            "/api/v1/service-requests", json={**BODY, "callback_url": url}, headers=AUTH
        )
    body = assert_problem(resp, 422, "schema_violation")
    assert body["context"]["field"] == "callback_url"
    assert aggregator.calls == []  # nothing submitted
    detail: str = body["detail"]
    return detail


@pytest.mark.parametrize(
    ("url", "says"),
    [
        ("http://127.0.0.1/cb", "callback_url points at 127.0.0.1, a loopback address"),
        ("http://localhost:8443/cb", "host 'localhost' resolves to 127.0.0.1, a loopback"),
        ("http://[::ffff:127.0.0.1]/cb", "points at 127.0.0.1, a loopback address"),
        ("http://[::1]/cb", "points at ::1, the loopback address"),
        ("http://2130706433/cb", "host '2130706433' resolves to 127.0.0.1, a loopback"),
        ("http://0x7f.1/cb", "host '0x7f.1' resolves to 127.0.0.1, a loopback"),
        ("http://127.1/cb", "host '127.1' resolves to 127.0.0.1, a loopback"),
        ("http://017700000001/cb", "host '017700000001' resolves to 127.0.0.1"),
        ("http://169.254.169.254/latest/meta-data/", "169.254.169.254, a link-local address"),
        ("http://metadata.example/v1/", "resolves to 169.254.169.254, a link-local"),
        ("https://intranet.example/cb", "resolves to 10.20.0.7, a private address (RFC 1918)"),
        ("http://[fd00::7]/cb", "fd00::7, a unique local address (RFC 4193)"),
        ("http://[fe80::1]/cb", "fe80::1, a link-local address"),
        ("http://0.0.0.0/cb", "0.0.0.0, an unspecified"),
        ("http://0/cb", "host '0' resolves to 0.0.0.0, an unspecified"),
        ("http://[::]/cb", "points at ::, the unspecified address"),
        ("http://100.64.0.1/cb", "carrier-grade NAT"),
        ("http://198.18.0.1/cb", "benchmarking"),
        ("http://240.0.0.1/cb", "reserved or broadcast"),
        ("http://255.255.255.255/cb", "reserved or broadcast"),
        ("http://224.0.0.1/cb", "multicast"),
        ("http://[64:ff9b::7f00:1]/cb", "the NAT64 form of 127.0.0.1"),
        ("http://[2002:a9fe:a9fe::1]/cb", "the 6to4 form of 169.254.169.254"),
        (
            "https://mixed.example/cb",
            "host 'mixed.example' resolves to 192.168.1.10, a private address (RFC 1918)",
        ),
    ],
)
async def test_special_addresses_are_refused_at_submit(
    aggregator: FakeAggregator, journal: Journal, url: str, says: str
) -> None:
    detail = await refused_at_submit(aggregator, journal, guard(), url)
    assert says in detail
    assert f"only in networks the bus operator lists in {NETWORKS}" in detail


async def test_a_name_with_one_private_address_among_public_ones_is_refused(
    aggregator: FakeAggregator, journal: Journal
) -> None:
    detail = await refused_at_submit(aggregator, journal, guard(), "https://mixed.example/cb")
    assert "one of its 2 addresses; every one must be allowed" in detail


async def test_a_public_address_is_accepted(aggregator: FakeAggregator, journal: Journal) -> None:
    for url in (
        "https://portal.example/smevbus/results",
        f"http://{PUBLIC_V4}:8080/cb",
        f"https://[{PUBLIC_V6}]/cb",
    ):
        assert await submit(aggregator, journal, guard(), url) == 202, url
    assert len(aggregator.calls) == 3


async def test_the_networks_setting_lets_a_private_address_through(
    aggregator: FakeAggregator, journal: Journal
) -> None:
    g = guard("10.20.0.0/16")
    assert await submit(aggregator, journal, g, "https://intranet.example/cb") == 202
    assert await submit(aggregator, journal, g, "http://10.20.255.1:8080/cb") == 202
    aggregator.calls.clear()
    detail = await refused_at_submit(aggregator, journal, g, "http://10.21.0.1/cb")
    assert "10.21.0.1, a private address" in detail
    # Loopback stays refused: only a listed network is let through.
    assert "loopback" in await refused_at_submit(aggregator, journal, g, "http://localhost/cb")


async def test_the_gateways_own_addresses_are_refused_at_submit(
    aggregator: FakeAggregator, journal: Journal
) -> None:
    settings = Settings(public_url="https://bus.example", callback_networks=["127.0.0.0/8"])
    g = callback_guard(settings, resolver=StaticResolver(NAMES))
    detail = await refused_at_submit(aggregator, journal, g, "https://bus.example/ws")
    assert "resolves to 93.184.215.20 port 443, this gateway itself" in detail
    assert f"list exactly {BUS_V4}/32 in {NETWORKS}" in detail
    # Listening on 127.0.0.1:8080 (the default): that port stays refused although
    # 127.0.0.0/8 is listed; other ports on loopback are let through.
    for url in ("http://127.0.0.1:8080/ws", "http://localhost:8080/ws"):
        detail = await refused_at_submit(aggregator, journal, g, url)
        assert "127.0.0.1 port 8080, this gateway itself" in detail
    assert await submit(aggregator, journal, g, "http://127.0.0.1:8081/cb") == 202
    assert await submit(aggregator, journal, g, "https://portal.example/cb") == 202


async def test_a_gateway_bound_to_every_interface_counts_its_machine_name_and_localhost(
    aggregator: FakeAggregator, journal: Journal
) -> None:
    resolver = StaticResolver({**NAMES, socket.gethostname().lower(): [BUS_V4]})
    settings = Settings(http_host="0.0.0.0", callback_networks=["127.0.0.0/8"])
    g = callback_guard(settings, resolver=resolver)
    for url in (f"http://{BUS_V4}:8080/ws", "http://localhost:8080/ws"):
        assert "this gateway itself" in await refused_at_submit(aggregator, journal, g, url)
    assert await submit(aggregator, journal, g, f"http://{BUS_V4}:8443/cb") == 202


async def test_a_name_that_does_not_resolve_is_refused_at_submit(
    aggregator: FakeAggregator, journal: Journal
) -> None:
    detail = await refused_at_submit(aggregator, journal, guard(), "https://nowhere.example/cb")
    assert "callback_url host 'nowhere.example' does not resolve" in detail
    assert "name a host this gateway can resolve" in detail


async def test_a_name_that_resolves_too_slowly_is_refused_at_submit(
    aggregator: FakeAggregator, journal: Journal
) -> None:
    class Silent(AbstractResolver):
        async def resolve(
            self, host: str, port: int = 0, family: socket.AddressFamily = socket.AF_INET
        ) -> list[ResolveResult]:
            await asyncio.Event().wait()  # never answers: only the guard's timeout ends it
            raise AssertionError("unreachable")

        async def close(self) -> None:
            pass

    g = CallbackGuard(resolver=Silent(), timeout=0.01)
    detail = await refused_at_submit(aggregator, journal, g, "https://portal.example/cb")
    assert "callback_url host 'portal.example' did not resolve within 0.01 s" in detail


# --- at connect: nothing reaches a refused address ----------------------------------------


async def deliver(setup: Setup, g: CallbackGuard, url: str, n: int = 1) -> Callback:
    """Request ``n``, final with callback ``url`` (put in the outbox without the
    submit-time check), after one round of the dispatcher through the real sender
    with ``g``: its callback."""
    record = await setup.final_request(n, url=url)
    sender = HttpSender(g)
    try:
        dispatcher = CallbackDispatcher(
            CallbackOutbox(setup.store),
            sender,
            lambda r: callback_body(r, BASE_URL),
            clock=setup.clock,
        )
        assert await dispatcher.deliver_due() == 1
    finally:
        await sender.aclose()
    callback = (await setup.store.get(record.id)).callback
    assert callback is not None
    return callback


async def test_dns_rebinding_after_submit_connects_to_nothing(setup: Setup) -> None:
    resolver = StaticResolver({"portal.example": [PUBLIC_V4]})
    g = CallbackGuard(resolver=resolver)
    url = setup.receiver.url("portal.example", "/cb")  # the listener's port
    assert await g.check(url) == url  # at submit: a public address
    resolver.names["portal.example"] = ["127.0.0.1"]  # at delivery: the listener

    with structlog.testing.capture_logs() as logs:
        callback = await deliver(setup, g, url)

    assert setup.receiver.connections == 0
    assert (callback.state, callback.attempts) == (CallbackState.FAILED, 1)
    assert callback.next_attempt_at is None  # given up at once: it would stay refused
    assert callback.last_error == (
        "refused: callback_url host 'portal.example' resolves to 127.0.0.1, a loopback "
        f"address; callbacks reach such addresses only in networks the bus operator lists "
        f"in {NETWORKS}"
    )
    assert [e["event"] for e in logs] == ["callback_failed"]


async def test_a_rebound_name_with_a_public_address_first_still_connects_nowhere(
    setup: Setup,
) -> None:
    resolver = StaticResolver({"portal.example": [PUBLIC_V4, "127.0.0.1"]})
    url = setup.receiver.url("portal.example", "/cb")
    callback = await deliver(setup, CallbackGuard(resolver=resolver), url)
    assert setup.receiver.connections == 0
    assert callback.state is CallbackState.FAILED
    assert callback.last_error is not None
    assert "every one must be allowed" in callback.last_error


@pytest.mark.parametrize(
    "host", ["127.0.0.1", "[::ffff:127.0.0.1]", "2130706433", "127.1", "0x7f.1"]
)
async def test_ip_literal_hosts_are_checked_at_connect_too(setup: Setup, host: str) -> None:
    # In the outbox without a submit-time check (say, accepted under a wider setting).
    callback = await deliver(setup, guard(), setup.receiver.url(host, "/cb"))
    assert setup.receiver.connections == 0
    assert (callback.state, callback.attempts) == (CallbackState.FAILED, 1)
    assert callback.last_error is not None
    assert callback.last_error.startswith("refused: callback_url ")
    assert "127.0.0.1, a loopback address" in callback.last_error


async def test_the_gateways_own_endpoint_is_refused_at_connect(setup: Setup) -> None:
    own = [("localhost", setup.receiver.port)]  # the listener plays the gateway
    url = setup.receiver.url("127.0.0.1", "/ws")
    callback = await deliver(setup, guard("127.0.0.0/8", own=own), url)
    assert setup.receiver.connections == 0
    assert callback.state is CallbackState.FAILED
    assert callback.last_error is not None
    assert f"127.0.0.1 port {setup.receiver.port}, this gateway itself" in callback.last_error


async def test_a_refused_literal_raises_before_any_connection() -> None:
    async with CallbackReceiver() as receiver:
        sender = HttpSender(CallbackGuard())
        try:
            with pytest.raises(CallbackRefused, match=r"points at 127\.0\.0\.1"):
                await sender.post(receiver.url(), b"{}", {})
            with pytest.raises(CallbackRefused, match="not a valid IP address"):
                await sender.post("http://1.2.3.4.5/cb", b"{}", {})
        finally:
            await sender.aclose()
        assert receiver.connections == 0


# --- a real listener on loopback: refused by default, reached when listed ----------------


async def test_by_default_nothing_reaches_a_loopback_listener_and_listed_it_does(
    setup: Setup, aggregator: FakeAggregator, journal: Journal
) -> None:
    url = setup.receiver.url()  # http://127.0.0.1:<port>/smevbus/results
    # The operating system's resolver: a numeric host is parsed, never looked up.
    default = CallbackGuard()
    detail = await refused_at_submit(aggregator, journal, default, url)
    assert "points at 127.0.0.1, a loopback address" in detail
    refused = await deliver(setup, default, url, 1)  # were it in the outbox anyway
    assert refused.state is CallbackState.FAILED
    assert (setup.receiver.connections, setup.receiver.received) == (0, [])

    listed = CallbackGuard(networks=[ip_network("127.0.0.0/8")])
    assert await submit(aggregator, journal, listed, url) == 202
    delivered = await deliver(setup, listed, url, 2)
    assert delivered.state is CallbackState.DELIVERED
    (request,) = setup.receiver.received
    assert request.target == "/smevbus/results"
    assert request.json()["status"] == "COMPLETED"


def test_docker_compose_ships_no_open_allow_list() -> None:
    compose = yaml.safe_load((REPO_ROOT / "docker-compose.yml").read_text(encoding="utf-8"))
    env = compose["services"]["gateway"]["environment"]
    (subnet,) = (c["subnet"] for c in compose["networks"]["default"]["ipam"]["config"])
    settings = Settings(
        callback_hosts=env["SMEVBUS_CALLBACK_HOSTS"],
        callback_networks=env["SMEVBUS_CALLBACK_NETWORKS"],
    )
    assert settings.callback_hosts == ("portal",)  # a name list, not "" (any host)
    assert settings.callback_networks == (ip_network(subnet),)  # the compose network only
