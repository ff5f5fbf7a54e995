"""The dashboard's static files (``gateway/ui/static``): a fixed list, served by name.

No directory is exposed: a name not in :data:`FILES` is 404, so no path can reach
anything else. Their content never changes within a release, so browsers may keep them
for a day.
"""

from __future__ import annotations

from functools import cache
from importlib.resources import files

from fastapi import Response

from gateway.core.errors import NotFound

FILES = {
    "ui.css": "text/css; charset=utf-8",
    "htmx.min.js": "text/javascript; charset=utf-8",
    "htmx-ext-sse.min.js": "text/javascript; charset=utf-8",
}


@cache
def _content(name: str) -> bytes:
    return files("gateway.ui").joinpath("static", name).read_bytes()


def static_file(name: str) -> Response:
    media_type = FILES.get(name)
    if media_type is None:
        raise NotFound(f"no static file {name}")
    return Response(
        _content(name),
        media_type=media_type,
        headers={"Cache-Control": "public, max-age=86400", "X-Content-Type-Options": "nosniff"},
    )
