"""Page helpers for driving the dashboard ``/ui`` in a browser, against any gateway: an
app served in the test process or a ``smevbus serve`` process (``base_url`` says which).

They act as an operator does (links, buttons and labels by their visible names), so a
test reads as the operator's steps, and each step can leave a screenshot.
"""

from __future__ import annotations

import asyncio
import re
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

    async def reload_until(self, where: Locator, text: str, within_s: float = 30.0) -> None:
        """Reload a page that does not refresh by itself until ``where`` shows ``text``
        (bounded: fails after ``within_s``)."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + within_s
        while text not in await where.inner_text():
            assert loop.time() < deadline, f"{where} does not show {text!r} in {within_s} s"
            await asyncio.sleep(0.25)  # the bus moves on by itself: poll, bounded
            await self.page.reload()

    def queue_row(self, queue: str) -> Locator:
        return self.page.locator(f'#queues tr[id="queue-{queue}"]')

    async def oldest_age_s(self, queue: str) -> float | None:
        """The queue's oldest-message age as the overview shows it now, in seconds."""
        return seconds_shown(await self.queue_row(queue).locator("td").nth(2).inner_text())

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

    async def replay_all(self, queue: str) -> Locator:
        """Replay every dead letter of ``queue`` from its page; the result line."""
        await self.go("Dead letters")
        await self.page.get_by_role("link", name=queue, exact=True).click()
        await self.page.get_by_role("button", name=re.compile(r"^Replay all \d+$")).click()
        return self.page.locator("#result")

    async def replay_shown(self) -> Locator:
        """Replay the dead letter on screen; the result line."""
        await self.page.get_by_role("button", name="Replay this message").click()
        return self.page.locator("#result")

    async def check_agency(self, participant: str) -> None:
        await self.go("Agencies")
        await self.page.get_by_role("button", name=f"Check now {participant}").click()


_DURATION = re.compile(
    r"^(?:(?P<h>\d+) h )?(?:(?P<min>\d+) min)? ?(?:(?P<s>[\d.]+) s)?(?:(?P<ms>\d+) ms)?$"
)


def seconds_shown(text: str) -> float | None:
    """A duration as the dashboard writes it (``12 ms``, ``4.2 s``, ``1 min 15 s``,
    ``2 h 5 min``; an em dash for none) in seconds."""
    text = text.strip()
    if text == "—":
        return None
    found = _DURATION.match(text)
    if found is None or not any(found.groupdict().values()):
        raise ValueError(f"not a duration the dashboard writes: {text!r}")
    parts = {k: float(v) for k, v in found.groupdict().items() if v is not None}
    return (
        parts.get("h", 0) * 3600
        + parts.get("min", 0) * 60
        + parts.get("s", 0)
        + parts.get("ms", 0) / 1000
    )


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
