"""The REST API's wire models (``/api/v1``): what goes over HTTP, and nothing else.

Shared by the server (:mod:`gateway.api.rest`), its client (:mod:`gateway.client.rest`)
and the result callbacks, so the client imports no server module and the two cannot
drift apart. :class:`ServiceRequestView` is the one representation of a service request:
the body of ``GET /api/v1/service-requests/{id}``, of list pages and cancels, and of the
result callback (built from a stored record by :mod:`gateway.api.views`).
"""

from __future__ import annotations

import uuid
from typing import Annotated, Any

from pydantic import AfterValidator, AwareDatetime, BaseModel, ConfigDict, Field, field_validator
from pydantic_core import PydanticCustomError

from gateway.core.aggregation import PartStatus
from gateway.core.service_lifecycle import CompletedBy, ServiceState
from gateway.core.xml_text import find_forbidden, forbidden_char
from gateway.store.callbacks import MAX_CALLBACK_URL, CallbackState

PREFIX = "/api/v1"
PROBLEM_MEDIA_TYPE = "application/problem+json"


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", populate_by_name=True)


#: The validation error type of a string XML 1.0 cannot carry; its ``ctx`` has ``char``
#: (``U+0000``) and, inside a free-form object, ``path`` (``child.last_name``).
XML_CHAR_ERROR = "xml_char"


def _xml_char_error(char: str, path: str | None = None) -> PydanticCustomError:
    where = f"{path}: " if path else ""
    return PydanticCustomError(
        XML_CHAR_ERROR,
        f"{where}contains {{char}}, which XML 1.0 cannot carry; remove control characters",
        {"char": char, **({"path": path} if path else {})},
    )


def _xml_text(value: str) -> str:
    char = forbidden_char(value)
    if char is not None:
        raise _xml_char_error(char)
    return value


#: A string that may reach XML or the journal: refused (422) with a character XML 1.0
#: cannot carry (see :mod:`gateway.core.xml_text`).
XmlText = Annotated[str, AfterValidator(_xml_text)]


class Problem(BaseModel):
    """RFC 9457 problem details (``application/problem+json``)."""

    type: str
    title: str
    status: int
    detail: str
    code: str
    origin: str
    transient: bool
    instance: str | None = None
    #: Machine-readable facts, e.g. ``field`` (the JSON path at fault).
    context: dict[str, Any] | None = None


class SubmitServiceRequest(_Model):
    service: XmlText = Field(min_length=1, max_length=63, examples=["child-birth-benefit"])
    applicant: dict[str, Any] = Field(
        description=(
            "Applicant data, as the service describes; no string in it (key or value) may "
            "hold a character XML 1.0 cannot carry (C0 controls but TAB, LF and CR; "
            "U+FFFE, U+FFFF; lone surrogates)"
        )
    )
    callback_url: XmlText | None = Field(
        default=None,
        description=(
            f"Absolute http(s) URL (at most {MAX_CALLBACK_URL} characters, no user name or "
            "password, on a host the gateway allows, resolving to public addresses or to "
            "networks the operator allows) to which the final result is POSTed: "
            "the same JSON as GET of the request, with headers `X-Smevbus-Service-Request`, "
            "`X-Smevbus-Attempt` and, when the gateway has a callback secret, "
            "`X-Smevbus-Signature: sha256=<hex HMAC-SHA256 of the body>`. Retried with "
            "exponential backoff until a 2xx; a failing callback never changes the result."
        ),
        examples=["https://portal.example.org/smevbus/results"],
    )
    deadline_s: float | None = Field(
        default=None, gt=0, le=30 * 24 * 3600, description="Overall deadline, seconds"
    )

    @field_validator("applicant")
    @classmethod
    def _applicant_text(cls, value: dict[str, Any]) -> dict[str, Any]:
        found = find_forbidden(value)
        if found is not None:
            path, char = found
            raise _xml_char_error(char, path)
        return value


class Links(_Model):
    self_: str = Field(alias="self")


class PageLinks(_Model):
    self_: str = Field(alias="self")
    next: str | None = None


class Submitted(_Model):
    id: uuid.UUID
    status: ServiceState
    links: Links


class RejectionView(_Model):
    code: str
    description: str


class PartTimings(_Model):
    deadline_at: AwareDatetime
    sent_at: AwareDatetime | None
    replied_at: AwareDatetime | None


class PartView(_Model):
    id: str
    message_type: str
    required: bool
    status: PartStatus
    message_id: uuid.UUID | None
    data: dict[str, Any] | None
    rejection: RejectionView | None
    timings: PartTimings


class CallbackView(_Model):
    """How the result callback to the portal's ``callback_url`` went so far."""

    url: str = Field(description="Where the final result is POSTed")
    state: CallbackState = Field(
        description=(
            "`pending`: the request is not final yet; `due`: the result is to be POSTed "
            "(retried with exponential backoff); `delivered`: the receiver answered 2xx; "
            "`failed`: every attempt failed, see `last_error`"
        )
    )
    attempts: int = Field(ge=0, description="POST attempts made so far")
    next_attempt_at: AwareDatetime | None = Field(
        description="When the next attempt is due (only while `due`)"
    )
    last_error: str | None = Field(
        description="Why the latest failed attempt failed (an HTTP status or a network error)"
    )
    delivered_at: AwareDatetime | None = Field(description="When a POST was answered 2xx")


class ServiceRequestView(_Model):
    id: uuid.UUID
    service: str
    status: ServiceState
    completed_by: CompletedBy | None
    failed_part: str | None
    created_at: AwareDatetime
    deadline_at: AwareDatetime
    completed_at: AwareDatetime | None
    parts: list[PartView]
    result: dict[str, Any] | None
    callback: CallbackView | None = Field(
        default=None,
        description=(
            "The result callback, when the request was submitted with a `callback_url`; "
            "in a callback's own body it shows the attempt being made"
        ),
    )
    links: Links


class ServiceRequestList(_Model):
    items: list[ServiceRequestView]
    next_cursor: str | None
    links: PageLinks


class TransitionView(_Model):
    from_state: str | None
    to_state: str
    at: AwareDatetime
    reason: str | None
    actor: str | None


class MessageTrace(_Model):
    message_id: str
    kind: str
    sender: str
    recipient: str
    message_type: str
    in_reply_to: str | None
    state: str
    created_at: AwareDatetime
    updated_at: AwareDatetime
    expires_at: AwareDatetime | None
    test_message: bool
    transitions: list[TransitionView]
    #: For a request: the MessageIDs of the responses to it, oldest first.
    responses: list[str]
