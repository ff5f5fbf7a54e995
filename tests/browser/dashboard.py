"""Page helpers for driving the dashboard ``/ui`` in a browser, against any gateway: an
app served in the test process or a ``smevbus serve`` process (``base_url`` says which).

They act as an operator does (links, buttons and labels by their visible names), so a
test reads as the operator's steps, and each step can leave a screenshot.
"""

from __future__ import annotations

import asyncio
import socket
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

import uvicorn
from playwright.async_api import Locator, Page, expect
from starlette.types import ASGIApp


class Dashboard:
    def __init__(self, page: Page, base_url: str, shots: Path) -> None:
        self.page = page
        self.base_url = base_url.rstrip("/")
        self.shots = shots
        self._taken = 0
        #: Errors the page reported (a script failing, a policy refusing something).
        self.errors: list[str] = []
        page.on("console", lambda m: self.errors.append(m.text) if m.type == "error" else None)
        page.on("pageerror", lambda e: self.errors.append(str(e)))

    async def shot(self, name: str) -> Path:
        self._taken += 1
        path = self.shots / f"{self._taken:02d}-{name}.png"
        await self.page.screenshot(path=str(path), full_page=True)
        return path

    async def login(self, token: str) -> None:
        """Open ``/ui/``, be sent to the login form, sign in, land on the overview."""
        await self.page.goto(f"{self.base_url}/ui/")
        await expect(self.page).to_have_url(f"{self.base_url}/ui/login?next=%2Fui%2F")
        await self.shot("login")
        await self.page.get_by_label("Operator token").fill(token)
        await self.page.get_by_role("button", name="Sign in").click()
        await expect(self.page).to_have_url(f"{self.base_url}/ui/")
        await expect(self.page.get_by_role("heading", name="Overview")).to_be_visible()

    async def go(self, section: str) -> None:
        """Follow a navigation link: Overview, Messages, Dead letters or Agencies."""
        nav = self.page.get_by_role("navigation", name="Dashboard")
        await nav.get_by_role("link", name=section, exact=True).click()
        await expect(self.page.get_by_role("heading", level=1)).to_contain_text(section)

    def queue_row(self, queue: str) -> Locator:
        return self.page.locator(f'#queues tr[id="queue-{queue}"]')

    def agency_row(self, participant: str) -> Locator:
        return self.page.locator(f'#agencies tr[id="agency-{participant}"]')

    async def search(self, ident: str) -> Locator:
        """Search a MessageID or service-request id; the traces found."""
        await self.go("Messages")
        await self.page.get_by_label("MessageID or service-request id").fill(ident)
        await self.page.get_by_role("button", name="Search").click()
        return self.page.locator("section.trace")

    async def open_dead_letter(self, queue: str, message_id: str) -> None:
        await self.go("Dead letters")
        await self.page.get_by_role("link", name=queue, exact=True).click()
        await self.page.get_by_role("link", name=message_id).click()
        await expect(self.page.get_by_role("heading", level=1)).to_contain_text(message_id)

    async def replay_shown(self) -> Locator:
        """Replay the dead letter on screen; the result line."""
        await self.page.get_by_role("button", name="Replay this message").click()
        return self.page.locator("#result")

    async def check_agency(self, participant: str) -> None:
        await self.go("Agencies")
        await self.page.get_by_role("button", name=f"Check now {participant}").click()


@asynccontextmanager
async def serving(app: ASGIApp) -> AsyncIterator[str]:
    """Serve ``app`` with uvicorn on a free loopback port in this event loop; its base URL.

    The socket listens before uvicorn starts, so a browser may connect at once (the
    kernel holds the connection until the server accepts it): nothing to wait for.
    """
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.bind(("127.0.0.1", 0))
    sock.listen(64)
    host, port = sock.getsockname()
    config = uvicorn.Config(app, log_level="warning", timeout_graceful_shutdown=5)
    server = uvicorn.Server(config)
    task = asyncio.create_task(server.serve(sockets=[sock]))
    try:
        yield f"http://{host}:{port}"
    finally:
        server.should_exit = True
        await task
