"""A real headless browser for the dashboard tests: Debian's ``chromium`` driven by
playwright (which cannot download browsers here, so it never installs its own).

Without ``chromium`` on the PATH a browser test is skipped, except under ``CI=true``,
where it fails: CI must not quietly test less. Screenshots go to ``.artifacts/ui/<test>/``
at the repository root (ignored by git).
"""

from __future__ import annotations

import os
import shutil
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from playwright.async_api import Browser, async_playwright

from gateway.config import REPO_ROOT

CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]


@pytest.fixture
async def chromium() -> AsyncIterator[Browser]:
    executable = shutil.which("chromium")
    if executable is None:
        reason = "chromium is not installed (scripts/bootstrap.sh installs it)"
        if os.environ.get("CI", "").lower() == "true":
            pytest.fail(f"{reason}; CI=true: the browser tests must run")
        pytest.skip(reason)
    async with async_playwright() as playwright:
        browser = await playwright.chromium.launch(executable_path=executable, args=CHROMIUM_ARGS)
        try:
            yield browser
        finally:
            await browser.close()


@pytest.fixture
def artifacts(request: pytest.FixtureRequest) -> Path:
    """This test's screenshot directory, emptied."""
    where = REPO_ROOT / ".artifacts" / "ui" / request.node.name
    shutil.rmtree(where, ignore_errors=True)
    where.mkdir(parents=True)
    return where
