"""Issue 13's "Done when", end to end: an operator at ``/ui`` of a bus running as processes.

Every component is its own process, started as docker-compose starts it
(:func:`gateway.testing.chain.running_chain`: ``smevbus serve`` on RabbitMQ and
PostgreSQL, the three mock agencies, their adapters with /health, /ready and /metrics),
plus a real ``prometheus`` scraping the gateway (with the operator token) and the
adapters every second and evaluating ``deploy/prometheus/alerts.yml``. In a headless
chromium the operator:

1. signs in and sees the traffic ``smevbus submit`` sends (run as the CLI, a process);
2. stops MVD's mock agency: its adapter retries each request, then answers
   ``AGENCY_UNAVAILABLE``; the operator watches ``requests.MVD_MIGR``'s oldest-message
   age rise and MVD's availability fall below the 95 % target, and Prometheus raises
   ``SmevbusAgencyAvailabilityLow`` for MVD_MIGR (pending: the rule wants 5 minutes);
   the Agencies page's check finds the agency unreachable;
3. starts the agency again and replays the dead letters from the page, finds the
   replay in the journal under their name and sees the agency answer it, and a new
   request; the check finds the agency reachable again.

The stopped agency itself leaves no dead letters: its adapter settles every request
with an ``AGENCY_UNAVAILABLE`` rejection, which the portal sees, and nothing is lost.
The dead letter comes as an operator meets one: MVD's adapter process is redeployed
with a stale trust store (another CA, as after a CA rotation that missed it), cannot
verify the portal's signature on a request and refuses it, which dead-letters it
(:mod:`adapters.sdk.push`); redeployed with the right keys, it answers the request
the operator replays, and its service request completes.

Waits are bounded polls on what the page, the bus or Prometheus show; nothing depends
on how long a step took.
"""

from __future__ import annotations

import asyncio
import json
import os
import shutil
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from functools import partial
from pathlib import Path
from typing import Any, TypeVar

import httpx
import pytest
from playwright.async_api import Browser, expect

from gateway.config import REPO_ROOT
from gateway.core.catalogue import parse_catalogue
from gateway.core.clock import SystemClock
from gateway.crypto.devpki import cert_path, init_dev_pki, key_path
from gateway.testing.chain import Chain, running_chain
from gateway.testing.processes import SMEVBUS, ServiceProcess
from gateway.testing.prometheus import PrometheusProcess, ScrapeJob
from tests.browser.dashboard import Dashboard
from tests.integration import store_fixtures
from tests.integration.conftest import amqp_url

__all__ = ["amqp_url"]  # the broker fixture, shared with the integration tests
postgres_url = store_fixtures.postgres_url
pytestmark = pytest.mark.integration

T = TypeVar("T")

OPERATOR_TOKEN = "scenario-operator-token"
OPERATOR = "petrova"
PORTAL_TOKEN = "scenario-portal-token"
MVD = "MVD_MIGR"
MVD_QUEUE = f"requests.{MVD}"
#: Passport checks (MVD only) sent while MVD's agency is down: each holds its adapter
#: for its retries, so the ones behind it wait in the queue.
REQUESTS_WHILE_DOWN = 8
#: Bounds of the waits, generous for a loaded 2-core machine; none is a measurement.
STEP_MS = 30_000
WITHIN = 60.0
CLI_WITHIN = 120.0

CATALOGUE = parse_catalogue((REPO_ROOT / "config" / "services.toml").read_text("utf-8"))


def _required(tool: str) -> None:
    if shutil.which(tool) is None:
        reason = f"{tool} is not installed (scripts/bootstrap.sh installs it)"
        if os.environ.get("CI", "").lower() == "true":
            pytest.fail(f"{reason}; CI=true: the operator scenario must run")
        pytest.skip(reason)


@pytest.fixture
def chain(amqp_url: str, postgres_url: str, tmp_path: Path) -> Iterator[Chain]:
    with running_chain(
        amqp_url,
        tmp_path / "keys",
        tmp_path,
        api_tokens={PORTAL_TOKEN: "PORTAL"},
        # The adapters' /metrics want an operator token as the gateway's does.
        shared_env={"SMEVBUS_OPS_TOKENS": json.dumps({OPERATOR_TOKEN: OPERATOR})},
        gateway_env={
            "SMEVBUS_METRICS_INTERVAL_S": "1",
            "SMEVBUS_AVAILABILITY_INTERVAL_S": "1",
            "SMEVBUS_AVAILABILITY_WINDOW_S": "3600",
        },
        # As docker-compose.yml runs them: ZAGS and FNS pull, MVD is pushed to.
        pulling=("zags", "fns"),
        adapter_args=("--poll-max", "2"),
    ) as running:
        yield running


@pytest.fixture
def prometheus(chain: Chain, tmp_path: Path) -> Iterator[PrometheusProcess]:
    _required("prometheus")
    workdir = tmp_path / "prometheus"
    workdir.mkdir()
    gateway = chain.gateway.base_url.removeprefix("http://")
    adapters = tuple(f"127.0.0.1:{port}" for port in chain.ops_ports.values())
    server = PrometheusProcess(
        workdir,
        [
            ScrapeJob("smevbus-gateway", (gateway,), OPERATOR_TOKEN),
            ScrapeJob("smevbus-adapters", adapters, OPERATOR_TOKEN),
        ],
    )
    server.start()
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture
async def dashboard(chromium: Browser, chain: Chain, artifacts: Path) -> AsyncIterator[Dashboard]:
    context = await chromium.new_context(viewport={"width": 1280, "height": 1000})
    context.set_default_timeout(STEP_MS)
    try:
        yield Dashboard(await context.new_page(), chain.gateway.base_url, artifacts)
    finally:
        await context.close()


@pytest.fixture
def applicants(tmp_path: Path) -> dict[str, Path]:
    """Service -> a JSON file with its catalogue's example applicant, for ``--applicant``."""
    files = {}
    for service in ("child-birth-benefit", "passport-check"):
        path = tmp_path / f"{service}.json"
        path.write_text(json.dumps(CATALOGUE.get(service).example), encoding="utf-8")
        files[service] = path
    return files


async def submit(chain: Chain, applicant: Path, service: str, *args: str) -> list[str]:
    """``smevbus submit`` as a portal's operator runs it; its output lines (the first is
    the service request's id)."""
    process = await asyncio.create_subprocess_exec(
        str(SMEVBUS),
        "submit",
        service,
        "--applicant",
        str(applicant),
        "--gateway-url",
        chain.gateway.base_url,
        *args,
        env={**os.environ, "SMEVBUS_API_TOKEN": PORTAL_TOKEN, "COLUMNS": "200"},
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    out, err = await asyncio.wait_for(process.communicate(), CLI_WITHIN)
    assert process.returncode == 0, err.decode()
    return out.decode().splitlines()


async def until(probe: Callable[[], Awaitable[T | None]], what: str) -> T:
    """``probe()`` once it returns something, polled for at most :data:`WITHIN` seconds."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + WITHIN
    while True:
        found = await probe()
        if found is not None:
            return found
        assert loop.time() < deadline, f"not within {WITHIN} s: {what}"
        await asyncio.sleep(0.25)  # what is polled changes by itself: poll, bounded


async def service_request(chain: Chain, request_id: str) -> dict[str, Any]:
    async with httpx.AsyncClient(
        base_url=chain.gateway.base_url,
        headers={"Authorization": f"Bearer {PORTAL_TOKEN}"},
        timeout=30,
    ) as http:
        view: dict[str, Any] = (
            (await http.get(f"/api/v1/service-requests/{request_id}")).raise_for_status().json()
        )
    return view


async def final_view(chain: Chain, request_id: str) -> dict[str, Any] | None:
    """The service request once it is no longer PENDING."""
    view = await service_request(chain, request_id)
    return None if view["status"] == "PENDING" else view


def stale_trust(keys: Path, where: Path, participant: str) -> Path:
    """The keys directory of ``participant``'s adapter redeployed with a stale trust
    store: its own key and certificate, and another CA (one that did not issue the
    portal's certificate), as after a CA rotation that missed it."""
    init_dev_pki(where, {}, clock=SystemClock())
    for path in (cert_path(keys, participant), key_path(keys, participant)):
        shutil.copy(path, where / path.name)
    return where


async def test_an_operator_watches_an_agency_fail_and_recover_and_replays_its_dead_letters(
    chain: Chain,
    prometheus: PrometheusProcess,
    dashboard: Dashboard,
    applicants: dict[str, Path],
    tmp_path: Path,
) -> None:
    page = dashboard.page
    benefit, passport = applicants["child-birth-benefit"], applicants["passport-check"]

    # Prometheus scrapes the gateway (with the operator token) and the three adapters.
    async def all_up() -> dict[str, str] | None:
        health = await prometheus.targets_up()
        return health if len(health) == 4 and set(health.values()) == {"up"} else None

    await until(all_up, "every scrape target up")

    # 1. Traffic from the portal's CLI shows on the overview.
    await dashboard.login(OPERATOR_TOKEN)
    await expect(page.locator("#operator")).to_have_text(OPERATOR)
    outputs = await asyncio.gather(
        *(submit(chain, benefit, "child-birth-benefit", "--wait") for _ in range(2))
    )
    for lines in outputs:
        assert any("status:" in line and "COMPLETED" in line for line in lines), lines
    for agency in ("ZAGS", MVD, "FNS"):
        row = dashboard.agency_row(agency)
        await expect(row.locator("td").nth(0)).to_have_text("2")  # requests in the window
        await expect(row.locator("td").nth(1)).to_have_text("100.0 %")
    await expect(page.locator("#messages-rate")).not_to_have_text("0.00/s")
    await dashboard.shot("traffic")

    # 2. MVD's agency stops: the adapter retries each request, then rejects it
    # AGENCY_UNAVAILABLE; the ones behind it wait, and the queue's oldest age rises.
    await asyncio.to_thread(chain.services["mock-mvd_migration"].stop)
    created = await asyncio.gather(
        *(submit(chain, passport, "passport-check") for _ in range(REQUESTS_WHILE_DOWN))
    )
    assert len({lines[0] for lines in created}) == REQUESTS_WHILE_DOWN

    async def waiting() -> float | None:
        age = await dashboard.oldest_age_s(MVD_QUEUE)
        return age if age else None

    first = await until(waiting, f"{MVD_QUEUE} shows a message waiting")
    await dashboard.shot("queue-waiting")

    async def older() -> float | None:
        age = await dashboard.oldest_age_s(MVD_QUEUE)
        return age if age is not None and age > first else None

    later = await until(older, f"{MVD_QUEUE}'s oldest age rising past {first} s")
    print(f"\n{MVD_QUEUE} oldest message age on the page: {first} s, then {later} s")
    mvd = dashboard.agency_row(MVD)
    await expect(mvd).to_contain_text("below target")
    await expect(dashboard.agency_row("ZAGS")).not_to_contain_text("below target")
    await dashboard.shot("availability-below-target")

    # The alert's expression holds for MVD (and for no one else): Prometheus has it
    # pending (the rule wants 5 minutes of it before it fires).
    rule = 'ALERTS{alertname="SmevbusAgencyAvailabilityLow"}'

    async def alerting() -> list[dict[str, Any]] | None:
        return await prometheus.query(rule) or None

    alerts = await until(alerting, f"{rule} in Prometheus")
    assert [a["metric"]["agency"] for a in alerts] == [MVD], alerts
    assert alerts[0]["metric"]["alertstate"] in ("pending", "firing")
    [ratio] = await prometheus.query(f'smevbus_agency_availability_ratio{{agency="{MVD}"}}')
    assert float(ratio["value"][1]) < 0.95

    # The connectivity check finds MVD's agency unreachable (SMEVBUS_AGENCY_PROBES).
    await dashboard.check_agency(MVD)
    await expect(dashboard.agency_row(MVD).locator("strong.warn")).to_have_text("no")
    await dashboard.shot("agency-unreachable")
    await dashboard.go("Overview")

    # Every passport check ends FAILED by MVD's AGENCY_UNAVAILABLE, none hangs.
    for lines in created:
        view = await until(partial(final_view, chain, lines[0]), f"{lines[0]} final")
        assert view["status"] == "FAILED", view
        assert view["parts"][0]["rejection"]["code"] == "AGENCY_UNAVAILABLE", view
    await expect(page.locator(f'#queues tr[id="queue-{MVD_QUEUE}"] td').nth(2)).to_have_text("0 ms")
    await dashboard.shot("queue-drained")

    # 3. The agency is back, but MVD's adapter comes back with a stale trust store: it
    # cannot verify the portal's signature and refuses the request (a dead letter).
    await asyncio.to_thread(chain.services["mock-mvd_migration"].start)
    adapter = chain.services["adapter-mvd_migration"]
    stale_keys = stale_trust(chain.keys, tmp_path / "stale-keys", MVD)
    stale = ServiceProcess(
        adapter.argv,
        adapter.log_path,
        env={**adapter.env, "SMEVBUS_KEYS_DIR": str(stale_keys)},
        ready_url=adapter.ready_url,
    )
    await asyncio.to_thread(adapter.stop)
    await asyncio.to_thread(stale.start)
    try:
        [dead_request, *_] = await submit(chain, passport, "passport-check")
        letters = dashboard.queue_row(MVD_QUEUE).locator("td").nth(4)
        await expect(letters).to_have_text("1")
    finally:
        await asyncio.to_thread(stale.stop)
    await dashboard.shot("dead-letter")
    # Redeployed with the right keys.
    await asyncio.to_thread(adapter.start)

    # Replayed from the page once the journal has it DEAD_LETTERED; journaled with the
    # operator's name; the agency answers it.
    dead = (await service_request(chain, dead_request))["parts"][0]["message_id"]
    await dashboard.go("Dead letters")
    await page.get_by_role("link", name=MVD_QUEUE, exact=True).click()
    letter = page.locator(f'tr[id="letter-{dead}"]')
    await expect(letter).to_contain_text("the consumer's signature does not verify")
    await dashboard.reload_until(letter, "DEAD_LETTERED")  # the journal has it so
    await dashboard.shot("dead-letter-reason")
    result = await dashboard.replay_all(MVD_QUEUE)
    await expect(result).to_have_text(f"1 replayed, 0 skipped, by {OPERATOR}.")
    await dashboard.shot("replayed")
    await page.get_by_role("link", name=dead).click()
    replay = page.locator("table.lifecycle tbody tr", has_text="DEAD_LETTERED → QUEUED")
    await expect(replay.locator("td.actor")).to_have_text(OPERATOR)

    view = await until(partial(final_view, chain, dead_request), "the replayed one answered")
    assert view["status"] == "COMPLETED", view
    await dashboard.reload_until(page.locator("section.trace .state"), "RESPONSE_DELIVERED")
    await dashboard.shot("replay-journal")

    # A new request is answered by the agency at once.
    lines = await submit(chain, passport, "passport-check", "--wait")
    assert any("status:" in line and "COMPLETED" in line for line in lines), lines
    traces = await dashboard.search(lines[0])
    await expect(traces).to_have_count(1)  # its one part: the request to MVD
    await dashboard.reload_until(traces.locator(".state"), "RESPONSE_DELIVERED")
    await expect(traces).to_contain_text("Responses:")  # MVD's answer, linked
    await dashboard.shot("answered-again")
    await dashboard.check_agency(MVD)
    await expect(dashboard.agency_row(MVD)).to_contain_text("yes (200 in")
    await dashboard.shot("agency-checked")

    assert dashboard.errors == []
