"""Fixtures for every test."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
import structlog


@pytest.fixture(autouse=True)
def _default_logging() -> Iterator[None]:
    """Undo a CLI command's ``configure_logging`` (its level filter would hide the
    events later tests capture with ``structlog.testing.capture_logs``)."""
    yield
    structlog.reset_defaults()
