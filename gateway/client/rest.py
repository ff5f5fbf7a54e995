"""A typed async client of the REST API (``/api/v1``): service requests and traces.

Responses are parsed with the wire models the server answers with
(:mod:`gateway.wire.rest`), so client and server cannot drift apart; no server module
is imported. Errors are raised as :mod:`gateway.client.api` says: the
:class:`~gateway.core.errors.SmevbusError` each problem+json answer carries.

    async with ServiceRequestsClient("http://gateway:8080", token) as api:
        view = await api.submit("child-birth-benefit", applicant)
        final = await api.wait(view.id, timeout=120)
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Awaitable, Callable
from datetime import datetime
from typing import Any

from gateway.client.api import ApiClient, error_from_problem
from gateway.core.service_lifecycle import FINAL, ServiceState
from gateway.wire.rest import (
    PREFIX,
    CallbackView,
    MessageTrace,
    PartView,
    ServiceRequestList,
    ServiceRequestView,
    Submitted,
    TransitionView,
)

ProgressCallback = Callable[[ServiceRequestView], Awaitable[None] | None]


def is_final(view: ServiceRequestView) -> bool:
    return view.status in FINAL


def _progress_key(view: ServiceRequestView) -> tuple[object, ...]:
    return (view.status, *((p.id, p.status) for p in view.parts))


class ServiceRequestsClient(ApiClient):
    """The REST API of one gateway, as one portal (bearer ``token``).

    ``transport`` replaces the network (``httpx.ASGITransport(app=...)`` in tests).
    """

    # --- the API ----------------------------------------------------------------

    async def submit(
        self,
        service: str,
        applicant: dict[str, Any],
        *,
        idempotency_key: str | None = None,
        deadline_s: float | None = None,
        callback_url: str | None = None,
    ) -> ServiceRequestView:
        """Submit a service request and return its current view.

        Retrying under the same ``idempotency_key`` returns the first request. With
        ``callback_url`` the gateway POSTs the final view there (see ``view.callback``).
        """
        body: dict[str, Any] = {"service": service, "applicant": applicant}
        if deadline_s is not None:
            body["deadline_s"] = deadline_s
        if callback_url is not None:
            body["callback_url"] = callback_url
        headers = {"Idempotency-Key": idempotency_key} if idempotency_key is not None else {}
        submitted = await self._call(
            Submitted, "POST", f"{PREFIX}/service-requests", json=body, headers=headers
        )
        return await self.get(submitted.id)

    async def get(self, id: str | uuid.UUID) -> ServiceRequestView:
        return await self._call(ServiceRequestView, "GET", f"{PREFIX}/service-requests/{id}")

    async def list(
        self,
        *,
        status: ServiceState | str | None = None,
        service: str | None = None,
        since: datetime | None = None,
        limit: int | None = None,
        after: str | None = None,
    ) -> ServiceRequestList:
        """One page of the caller's service requests, oldest first (``after`` = cursor)."""
        params: dict[str, str] = {}
        if status is not None:
            params["status"] = str(status)
        if service is not None:
            params["service"] = service
        if since is not None:
            params["since"] = since.isoformat()
        if limit is not None:
            params["limit"] = str(limit)
        if after is not None:
            params["after"] = after
        return await self._call(
            ServiceRequestList, "GET", f"{PREFIX}/service-requests", params=params
        )

    async def cancel(self, id: str | uuid.UUID) -> ServiceRequestView:
        """Cancel a pending request; a final one is a ``conflict`` error."""
        return await self._call(ServiceRequestView, "DELETE", f"{PREFIX}/service-requests/{id}")

    async def trace(self, message_id: str | uuid.UUID) -> MessageTrace:
        """The lifecycle of one bus message the caller sent or received."""
        return await self._call(MessageTrace, "GET", f"{PREFIX}/messages/{message_id}")

    async def wait(
        self,
        id: str | uuid.UUID,
        *,
        timeout: float,  # noqa: ASYNC109 - a polling budget, not a cancel scope
        poll_interval: float = 1.0,
        on_progress: ProgressCallback | None = None,
    ) -> ServiceRequestView:
        """Poll until the request is final and return that view.

        ``on_progress`` gets the first view and then every view in which the status
        or a part's status changed (it may be a coroutine function). Raises
        :class:`TimeoutError` when ``timeout`` seconds pass first.
        """
        loop = asyncio.get_running_loop()
        give_up = loop.time() + timeout
        seen: tuple[object, ...] | None = None
        while True:
            view = await self.get(id)
            key = _progress_key(view)
            if on_progress is not None and key != seen:
                outcome = on_progress(view)
                if outcome is not None:
                    await outcome
            seen = key
            if is_final(view):
                return view
            if loop.time() >= give_up:
                raise TimeoutError(
                    f"service request {id} is still {view.status} after {timeout:g}s"
                )
            await asyncio.sleep(max(0.0, min(poll_interval, give_up - loop.time())))


__all__ = [
    "CallbackView",
    "MessageTrace",
    "PartView",
    "ProgressCallback",
    "ServiceRequestList",
    "ServiceRequestView",
    "ServiceRequestsClient",
    "TransitionView",
    "error_from_problem",
    "is_final",
]
