"""The operator's dashboard ``/ui``: server-rendered pages (Jinja2), htmx and server-sent
events for live refresh, inline SVG charts; no front-end build. See
:func:`gateway.ui.pages.ui_router`."""

from gateway.ui.pages import ui_router

__all__ = ["ui_router"]
