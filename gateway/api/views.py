"""Stored service requests as the REST API shows them (:mod:`gateway.wire.rest` models).

:func:`service_request_view` is the one representation of a service request: the body
of ``GET /api/v1/service-requests/{id}``, of list pages and cancels, and of the result
callback POSTed to a portal's ``callback_url`` (:func:`callback_body`).
"""

from __future__ import annotations

import uuid

from gateway.store.service_requests import ServiceRequestRecord
from gateway.wire.rest import (
    PREFIX,
    CallbackView,
    Links,
    PartTimings,
    PartView,
    RejectionView,
    ServiceRequestView,
)


def service_request_view(record: ServiceRequestRecord, self_url: str) -> ServiceRequestView:
    """The API's representation of ``record``, linking to itself at ``self_url``."""
    state = record.state
    callback = record.callback
    return ServiceRequestView(
        id=state.id,
        service=state.service,
        status=state.status,
        completed_by=state.completed_by,
        failed_part=state.failed_part,
        created_at=state.created_at,
        deadline_at=state.deadline_at,
        completed_at=state.completed_at,
        parts=[
            PartView(
                id=p.id,
                message_type=p.message_type,
                required=p.required,
                status=p.status,
                message_id=p.message_id,
                data=p.data,
                rejection=(
                    RejectionView(code=p.rejection.code, description=p.rejection.description)
                    if p.rejection is not None
                    else None
                ),
                timings=PartTimings(
                    deadline_at=p.deadline_at, sent_at=p.sent_at, replied_at=p.replied_at
                ),
            )
            for p in state.parts
        ],
        result=state.result,
        callback=(
            CallbackView(
                url=callback.url,
                state=callback.state,
                attempts=callback.attempts,
                next_attempt_at=callback.next_attempt_at,
                last_error=callback.last_error,
                delivered_at=callback.delivered_at,
            )
            if callback is not None
            else None
        ),
        links=Links(self_=self_url),
    )


def service_request_url(base_url: str, request_id: uuid.UUID) -> str:
    """The absolute URL of a service request on a gateway reached at ``base_url``."""
    return f"{base_url.rstrip('/')}{PREFIX}/service-requests/{request_id}"


def callback_body(record: ServiceRequestRecord, base_url: str) -> bytes:
    """The JSON POSTed to the callback: the document GET of the request answers (same
    model, aliases and ISO times), its ``self`` link under ``base_url``."""
    view = service_request_view(record, service_request_url(base_url, record.id))
    return view.model_dump_json(by_alias=True).encode()
