"""Whether the bus admits a verified message, and where it goes: pure decisions.

The router hands in what it has verified (the envelope as plain values, the caller
the certificate identified, the registry, the time) and gets back a decision or a
typed error. No XML, keys or I/O here, so every rule is tested on values alone.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import datetime, timedelta

from gateway.core.clock import uuid1_time
from gateway.core.envelope import SenderProvidedRequestData, SenderProvidedResponseData
from gateway.core.errors import AccessDenied, InvalidContent, SchemaViolation, StaleMessageId
from gateway.core.registry import Participant, Registry


@dataclass(frozen=True)
class TimePolicy:
    #: A MessageID whose UUID v1 time is older than this is refused (replays, SMEV's
    #: StaleMessageId).
    message_id_window: timedelta = timedelta(days=2)
    #: Tolerated clock skew of senders, and the window for signed poll timestamps.
    clock_skew: timedelta = timedelta(minutes=5)


@dataclass(frozen=True)
class AnsweredRequest:
    """What the journal knows of the request a response answers."""

    message_id: str
    sender: str
    recipient: str
    message_type: str


def admit_request(
    request: SenderProvidedRequestData,
    sender: Participant,
    registry: Registry,
    now: datetime,
    policy: TimePolicy,
) -> Participant:
    """The provider to route ``request`` to, or the reason it is refused."""
    check_message_id(request.message_id, now, policy)
    if request.eol is not None and request.eol <= now:
        raise InvalidContent(
            f"end of life {request.eol.isoformat()} has already passed; send with a later EOL",
            reason="eol",
        )
    return registry.authorize_request(sender, request.content.message_type)


def admit_response(
    response: SenderProvidedResponseData,
    provider: Participant,
    request: AnsweredRequest,
    registry: Registry,
    now: datetime,
    policy: TimePolicy,
) -> Participant:
    """The consumer to deliver ``response`` to: only the request's provider may answer it,
    with content of the type asked for."""
    check_message_id(response.message_id, now, policy)
    if request.recipient != provider.mnemonic:
        raise AccessDenied(
            f"{provider.mnemonic} did not receive request {request.message_id} "
            "and may not answer it",
            to=request.message_id,
        )
    if response.content is not None and response.content.message_type != request.message_type:
        raise SchemaViolation(
            f"response content is of type {response.content.message_type} but the request "
            f"{request.message_id} asked for {request.message_type}",
            expected=request.message_type,
        )
    registry.authorize_response(provider, request.message_type)
    return registry.get(request.sender)


def check_message_id(message_id: uuid.UUID, now: datetime, policy: TimePolicy) -> None:
    """A MessageID must be a UUID v1 made recently: an old one is a replay or a bad clock."""
    try:
        made = uuid1_time(message_id)
    except ValueError:
        raise InvalidContent(
            f"MessageID {message_id} is not a UUID version 1 (time-based), as SMEV 3 requires",
            reason="message_id",
        ) from None
    _check_window(made, now, policy.message_id_window, policy, what=f"MessageID {message_id}")


def check_timestamp(when: datetime, now: datetime, policy: TimePolicy, *, what: str) -> None:
    """A signed poll timestamp must be close to now: a replayed GetRequest is refused."""
    _check_window(when, now, policy.clock_skew, policy, what=what)


def replay_window_end(when: datetime, policy: TimePolicy) -> datetime:
    """Until when a signed poll stamped ``when`` must be remembered to refuse its replay.

    :func:`check_timestamp` accepts it until ``when + clock_skew``; it is kept one skew
    longer for the other gateway processes, whose clocks may run behind this one's.
    """
    return when + 2 * policy.clock_skew


def _check_window(
    when: datetime, now: datetime, past: timedelta, policy: TimePolicy, *, what: str
) -> None:
    earliest, latest = now - past, now + policy.clock_skew
    if not earliest <= when <= latest:
        raise StaleMessageId(
            f"{what} carries time {when.isoformat()}, outside the accepted window "
            f"({earliest:%Y-%m-%dT%H:%M:%SZ} .. {latest:%Y-%m-%dT%H:%M:%SZ}); "
            "generate a new one and check the sender's clock",
            at=when.isoformat(),
        )
