"""structlog, configured once per process; context travels in contextvars.

Bind ``message_id``, ``service_request_id`` and ``participant`` with
:func:`structlog.contextvars.bound_contextvars` and every line logged inside
carries them. Secrets (keys, tokens) are never passed to a logger.
"""

from __future__ import annotations

import logging

import structlog


def configure_logging(*, fmt: str = "console", level: str = "INFO") -> None:
    renderer: structlog.typing.Processor = (
        structlog.processors.JSONRenderer()
        if fmt == "json"
        else structlog.dev.ConsoleRenderer(colors=False)
    )
    structlog.configure(
        processors=[
            structlog.contextvars.merge_contextvars,
            structlog.processors.add_log_level,
            structlog.processors.TimeStamper(fmt="iso", utc=True),
            structlog.processors.StackInfoRenderer(),
            # The console renderer formats exceptions itself; JSON needs them as text.
            *([structlog.processors.format_exc_info] if fmt == "json" else []),
            renderer,
        ],
        wrapper_class=structlog.make_filtering_bound_logger(
            logging.getLevelNamesMapping().get(level.upper(), logging.INFO)
        ),
        cache_logger_on_first_use=True,
    )
