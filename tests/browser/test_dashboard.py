"""The dashboard in a real headless browser (Debian chromium through playwright), served
by uvicorn on a real port: the gateway app on a test bus, with the operator's console
faked (:mod:`gateway.testing.ops`) so each figure on screen is known.

An operator signs in, reads the overview (and sees it change without reloading), finds a
service request's messages, opens a dead letter (its XML as text), replays it, finds the
replay in the message's journal under their name, and checks an agency in place.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import replace
from datetime import UTC, datetime
from pathlib import Path

import pytest
from playwright.async_api import Browser, expect

from gateway.api.app import create_app
from gateway.config import Settings
from gateway.testing.bus import open_bus
from gateway.testing.ops import (
    SAMPLE_DEAD,
    SAMPLE_SERVICE_REQUEST,
    FakeConsole,
    sample_console,
)
from tests.browser.dashboard import Dashboard, serving

TOKEN = "browser-test-operator-token"
OPERATOR = "petrova"
#: How long a step may take before the test fails (the overview refreshes every 5 s).
STEP_MS = 20_000


@pytest.fixture
async def console() -> FakeConsole:
    return sample_console(datetime.now(UTC))


@pytest.fixture
async def gateway_url(console: FakeConsole) -> AsyncIterator[str]:
    bus = await open_bus()
    try:
        app = create_app(Settings(ops_tokens={TOKEN: OPERATOR}), bus.root, console=console)
        async with serving(app) as url:
            yield url
    finally:
        await bus.close()


@pytest.fixture
async def dashboard(
    chromium: Browser, gateway_url: str, artifacts: Path
) -> AsyncIterator[Dashboard]:
    context = await chromium.new_context(viewport={"width": 1280, "height": 900})
    context.set_default_timeout(STEP_MS)
    try:
        yield Dashboard(await context.new_page(), gateway_url, artifacts)
    finally:
        await context.close()


async def test_an_operator_reads_the_overview_finds_a_message_and_replays_a_dead_letter(
    dashboard: Dashboard, console: FakeConsole
) -> None:
    page = dashboard.page
    await dashboard.login(TOKEN)
    await expect(page.locator("#operator")).to_have_text(OPERATOR)
    mvd = dashboard.queue_row("requests.MVD_MIGR")
    await expect(mvd.locator("td").nth(0)).to_have_text("17")
    await expect(mvd).to_contain_text("0 (none)")
    await expect(dashboard.agency_row("MVD_MIGR")).to_contain_text("below target")
    await expect(dashboard.agency_row("ZAGS")).not_to_contain_text("below target")
    await expect(page.locator("svg.chart")).to_have_count(2)
    await dashboard.shot("overview")

    # The queue fills: the page shows it by itself (server-sent events), no reload.
    queues = console.overview_view.queues
    console.overview_view = replace(
        console.overview_view,
        queues=tuple(replace(q, ready=42) if q.participant == "MVD_MIGR" else q for q in queues),
    )
    await expect(mvd.locator("td").nth(0)).to_have_text("42", timeout=STEP_MS)
    await dashboard.shot("overview-refreshed")

    traces = await dashboard.search(SAMPLE_SERVICE_REQUEST)
    await expect(traces).to_have_count(2)
    await expect(page.get_by_role("status")).to_contain_text("2 messages")
    await dashboard.shot("search")

    await dashboard.open_dead_letter("requests.MVD_MIGR", SAMPLE_DEAD)
    xml = page.locator("#xml")
    await expect(xml).to_contain_text('<ns1:PassportValidityRequest xmlns:ns1="urn://')
    await expect(xml).to_contain_text("&lt;script&gt;alert(1)&lt;/script&gt;")
    await expect(xml.locator("*:not(code)")).to_have_count(0)
    await dashboard.shot("dead-letter")

    result = await dashboard.replay_shown()
    await expect(result).to_have_text(f"1 replayed, 0 skipped, by {OPERATOR}.")
    assert [(a.kind, a.operator, a.message_ids) for a in console.actions] == [
        ("replay", OPERATOR, (SAMPLE_DEAD,))
    ]
    await dashboard.shot("replayed")

    await page.get_by_role("link", name=SAMPLE_DEAD).click()
    last = page.locator("table.lifecycle tbody tr").last
    await expect(last).to_contain_text("DEAD_LETTERED → QUEUED")
    await expect(last.locator("td.actor")).to_have_text(OPERATOR)
    await dashboard.shot("journal")

    await dashboard.check_agency("MVD_MIGR")
    await expect(dashboard.agency_row("MVD_MIGR")).to_contain_text("yes (200 in 48 ms)")
    assert page.url.endswith("/ui/agencies")  # swapped in place by htmx, no navigation
    await dashboard.shot("agency-checked")

    assert dashboard.errors == []
