"""The whole chain as processes (:func:`~gateway.testing.chain.running_chain`), for a
module's fixture: its keys and logs in fresh directories of the test session."""

from __future__ import annotations

from contextlib import AbstractContextManager
from typing import Any

import pytest

from gateway.testing.chain import Chain, running_chain


def chain_of(
    amqp_url: str,
    tmp_path_factory: pytest.TempPathFactory,
    *,
    token: str | None = None,
    **options: Any,
) -> AbstractContextManager[Chain]:
    """:func:`running_chain` with ``options``; ``token``: the portal's API token."""
    return running_chain(
        amqp_url,
        tmp_path_factory.mktemp("keys"),
        tmp_path_factory.mktemp("logs"),
        api_tokens=None if token is None else {token: "PORTAL"},
        **options,
    )
