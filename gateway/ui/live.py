"""Live refresh: a server-sent event stream of re-rendered page fragments.

Each event is named for the element it replaces (htmx's SSE extension swaps it in by
``sse-swap``) and carries the fragment's HTML, one ``data:`` line per line. The stream
renders, sends, waits ``every`` seconds and starts again, for as long as the client stays:
Starlette cancels it when the client goes away (the server's disconnect message), so an
abandoned dashboard costs nothing. A fragment that fails to render is replaced by a notice
and the stream goes on: the console may be down for a while, the page stays open.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable, Callable

import structlog

log = structlog.get_logger(__name__)

MEDIA_TYPE = "text/event-stream"
#: Headers that keep proxies from buffering or caching the stream.
HEADERS = {"Cache-Control": "no-store", "X-Accel-Buffering": "no"}


def event(name: str, html: str) -> bytes:
    lines = html.splitlines() or [""]
    return (f"event: {name}\n" + "".join(f"data: {line}\n" for line in lines) + "\n").encode()


async def fragments(
    name: str,
    render: Callable[[], Awaitable[str]],
    unavailable: Callable[[Exception], str],
    *,
    every: float,
) -> AsyncIterator[bytes]:
    """Events ``name`` with ``render()`` every ``every`` seconds, until cancelled."""
    while True:
        try:
            html = await render()
        except Exception as exc:
            log.warning("ui_live_render_failed", fragment=name, error=repr(exc))
            html = unavailable(exc)
        yield event(name, html)
        await asyncio.sleep(every)
