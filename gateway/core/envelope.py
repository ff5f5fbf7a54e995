"""The SMEV 3-style envelope as plain values.

These models carry what the router decides on; the signed XML itself travels
next to them, untouched (a signature covers bytes, not models). Business content
is kept as the serialized XML of the single element inside
``MessagePrimaryContent``; its root namespace is the message type.
"""

from __future__ import annotations

import uuid
from enum import StrEnum

from pydantic import AwareDatetime, BaseModel, ConfigDict, Field, model_validator


class _Frozen(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


class MessageKind(StrEnum):
    REQUEST = "request"
    RESPONSE = "response"


class PrimaryContent(_Frozen):
    """One business element: its message type (root namespace) and root name. Its XML
    stays in the verified tree the router journals (no rule reads it)."""

    message_type: str = Field(min_length=1)
    root: str = Field(min_length=1)


class SenderProvidedRequestData(_Frozen):
    message_id: uuid.UUID
    content: PrimaryContent
    test_message: bool = False
    eol: AwareDatetime | None = None
    reference_message_id: uuid.UUID | None = None
    transaction_code: str | None = None

    @model_validator(mode="after")
    def _uuid_v1(self) -> SenderProvidedRequestData:
        _require_v1(self.message_id)
        return self


class RejectionCode(StrEnum):
    """Why a provider declined a request (SMEV 3 codes plus two adapter codes).

    The wire carries only the four 1.1 codes; the two adapter codes travel as
    ``FAILURE`` / ``UNKNOWN_REQUEST_DESCRIPTION`` with their name as a prefix of the
    description (:mod:`gateway.xml.messages`), and readers restore them."""

    ACCESS_DENIED = "ACCESS_DENIED"
    NO_DATA = "NO_DATA"
    UNKNOWN_REQUEST_DESCRIPTION = "UNKNOWN_REQUEST_DESCRIPTION"
    FAILURE = "FAILURE"
    INVALID_REQUEST = "INVALID_REQUEST"
    AGENCY_UNAVAILABLE = "AGENCY_UNAVAILABLE"


class RequestRejected(_Frozen):
    code: RejectionCode
    description: str


class AsyncProcessingStatus(_Frozen):
    category: str = Field(min_length=1)
    details: str | None = None


class SenderProvidedResponseData(_Frozen):
    """A provider's answer: exactly one of content, rejections or a processing status."""

    message_id: uuid.UUID
    to: uuid.UUID
    content: PrimaryContent | None = None
    rejections: tuple[RequestRejected, ...] = ()
    status: AsyncProcessingStatus | None = None

    @model_validator(mode="after")
    def _exactly_one(self) -> SenderProvidedResponseData:
        _require_v1(self.message_id)
        given = sum((self.content is not None, bool(self.rejections), self.status is not None))
        if given != 1:
            raise ValueError(
                "a response carries exactly one of MessagePrimaryContent, "
                f"RequestRejected or AsyncProcessingStatus (got {given})"
            )
        return self

    @property
    def is_final(self) -> bool:
        """A processing status is interim; content or a rejection ends the exchange."""
        return self.status is None


class ParticipantRef(_Frozen):
    """A participant as a message names it: mnemonic and, optionally, a readable name."""

    mnemonic: str = Field(min_length=1)
    name: str | None = None


class MessageMetadata(_Frozen):
    """What the bus says about a message besides its content (SMEV's MessageMetadata).

    ``message_type`` is the namespace URI of the content's root element (on the wire:
    ``SupplementaryData/DetectedContentTypeName``); ``kind`` is what 1.1 calls
    ``MessageType`` (REQUEST or RESPONSE); ``status`` is the 1.1 ``InteractionStatusType``
    code of the message when the metadata was written
    (:mod:`gateway.core.interaction_status`); ``destination`` the queue it went to.
    """

    message_id: uuid.UUID
    message_type: str = Field(min_length=1)
    sender: ParticipantRef
    sending_timestamp: AwareDatetime
    kind: MessageKind = MessageKind.REQUEST
    recipient: ParticipantRef | None = None
    destination: str | None = None
    delivery_timestamp: AwareDatetime | None = None
    status: str | None = None


def _require_v1(message_id: uuid.UUID) -> None:
    if message_id.version != 1:
        raise ValueError(f"MessageID {message_id} must be a UUID version 1 (time-based)")
