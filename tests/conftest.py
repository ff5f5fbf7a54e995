"""Fixtures for every test."""

from __future__ import annotations

import logging
from collections.abc import Iterator

import pytest
import structlog


@pytest.fixture(autouse=True)
def _default_logging() -> Iterator[None]:
    """Undo a CLI command's ``configure_logging`` (its level filter would hide the
    events later tests capture with ``structlog.testing.capture_logs``, and its handler
    would write to a stream a finished test captured)."""
    root = logging.getLogger()
    handlers, level = root.handlers[:], root.level
    yield
    structlog.reset_defaults()
    root.handlers[:] = handlers
    root.setLevel(level)
