"""Result callbacks as the store keeps them: states, the value, and their columns.

A service request submitted with a ``callback_url`` carries a small outbox in its own
``service_requests`` row (the ``callback_*`` columns): ``pending`` while the request
is not final, ``due`` from the very ``UPDATE`` that saves its final state, then
``delivered`` or ``failed``. :mod:`gateway.store.callback_outbox` claims and settles
due callbacks; :mod:`gateway.aggregator.callbacks` POSTs them.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from gateway.core.aggregation import ServiceRequestState

#: Longest accepted ``callback_url`` (the column's size).
MAX_CALLBACK_URL = 2048


class CallbackState(StrEnum):
    """Where a request's result callback stands."""

    #: The request is not final yet: nothing to send.
    PENDING = "pending"
    #: Final: to be POSTed at ``next_attempt_at`` (or being POSTed, under a lease).
    DUE = "due"
    #: A POST was answered 2xx.
    DELIVERED = "delivered"
    #: Every attempt failed (or the URL is no longer allowed): given up.
    FAILED = "failed"


@dataclass(frozen=True, slots=True)
class Callback:
    """A request's result callback: where it goes and how delivery went so far."""

    url: str
    state: CallbackState
    #: Attempts started so far (claiming an attempt counts it).
    attempts: int = 0
    #: When the next attempt is due, or the running one's lease ends; ``None`` unless due.
    next_attempt_at: datetime | None = None
    last_error: str | None = None
    delivered_at: datetime | None = None


def new_callback(url: str | None, state: ServiceRequestState, at: datetime) -> Callback | None:
    """The callback of a request created at ``at`` with ``url`` (``None``: no callback)."""
    if url is None:
        return None
    if state.final:  # the aggregator never creates one final; keep the promise anyway
        return Callback(url, CallbackState.DUE, next_attempt_at=at)
    return Callback(url, CallbackState.PENDING)


@dataclass(frozen=True, slots=True)
class Settlement:
    """How a callback attempt ended: what a settle writes. ``next_attempt_at`` is always
    written; the other fields only when given (``None``: left as they are)."""

    next_attempt_at: datetime | None
    state: CallbackState | None = None
    last_error: str | None = None
    delivered_at: datetime | None = None
    attempts: int | None = None
