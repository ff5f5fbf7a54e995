"""Result callbacks as the store keeps them: states, the value, and their columns.

A service request submitted with a ``callback_url`` carries a small outbox in its own
``service_requests`` row (the ``callback_*`` columns): ``pending`` while the request
is not final, ``due`` from the very ``UPDATE`` that saves its final state, then
``delivered`` or ``failed``. :mod:`gateway.store.callback_outbox` claims and settles
due callbacks; :mod:`gateway.aggregator.callbacks` POSTs them.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum
from typing import TYPE_CHECKING, Any

from sqlalchemy import case, literal

from gateway.store.schema import service_requests

_SR = service_requests

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


def callback_columns(callback: Callback | None) -> dict[str, Any]:
    """Column values that store a new ``callback`` (nothing for no callback)."""
    if callback is None:
        return {}
    return {
        "callback_url": callback.url,
        "callback_state": callback.state.value,
        "callback_next_at": callback.next_attempt_at,
    }


def callback_due(at: datetime) -> dict[str, Any]:
    """SET clauses turning a ``pending`` callback ``due`` at ``at``, others unchanged.

    Both read the row's old ``callback_state``: SQL evaluates every SET expression
    against the row as it was before the UPDATE (on PostgreSQL and SQLite alike).
    """
    pending = _SR.c.callback_state == CallbackState.PENDING.value
    # Typed as the column, so SQLite gets the same naive-UTC text as everywhere else.
    when = literal(at, _SR.c.callback_next_at.type)
    return {
        "callback_state": case((pending, CallbackState.DUE.value), else_=_SR.c.callback_state),
        "callback_next_at": case((pending, when), else_=_SR.c.callback_next_at),
    }


def callback_of(columns: Mapping[Any, Any]) -> Callback | None:
    """The callback stored in a ``service_requests`` row (``None``: it has none)."""
    if columns["callback_state"] is None:
        return None
    return Callback(
        url=columns["callback_url"],
        state=CallbackState(columns["callback_state"]),
        attempts=int(columns["callback_attempts"]),
        next_attempt_at=columns["callback_next_at"],
        last_error=columns["callback_last_error"],
        delivered_at=columns["callback_delivered_at"],
    )
