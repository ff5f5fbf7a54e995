"""Rows in, records out: the column lists and the mapping both backends share.

asyncpg hands back ``timestamptz`` as aware datetimes, ``bytea`` as bytes and
``boolean`` as bool; SQLite hands back naive UTC text (``YYYY-MM-DD HH:MM:SS.ffffff``,
the form SQLAlchemy wrote before the stores left it), blobs and 0/1. The functions
here take either.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any

from gateway.core.aggregation import ServiceRequestState
from gateway.core.envelope import MessageKind
from gateway.core.lifecycle import MessageState
from gateway.store.callbacks import Callback, CallbackState
from gateway.store.records import MessageRecord, TransitionRecord
from gateway.store.service_requests import ServiceRequestRecord

#: A message's columns but its body: what moves and lists return.
MESSAGE_HEAD = (
    "message_id, kind, sender, recipient, message_type, in_reply_to, content_sha256, "
    "state, created_at, updated_at, expires_at, test_message, version"
)
#: Every column of a message a record holds (``answered_by`` is the store's own).
MESSAGE_FULL = MESSAGE_HEAD + ", xml"
TRANSITION_COLUMNS = "id, message_id, from_state, to_state, at, reason, actor"
SERVICE_REQUEST_COLUMNS = (
    "id, service, participant, idempotency_key, state, next_deadline, created_at, "
    "updated_at, version, callback_url, callback_state, callback_attempts, "
    "callback_next_at, callback_last_error, callback_delivered_at, request_digest"
)
#: The same, of ``service_requests`` aliased ``s`` in a join.
S_SERVICE_REQUEST_COLUMNS = ", ".join(f"s.{c}" for c in SERVICE_REQUEST_COLUMNS.split(", "))

Row = Mapping[str, Any]


def utc(value: datetime | str) -> datetime:
    """A stored timestamp as an aware UTC datetime."""
    if type(value) is datetime and value.tzinfo is UTC:
        return value  # asyncpg's timestamptz: astimezone(UTC) would return it as it is
    if isinstance(value, str):
        value = datetime.fromisoformat(value)
    if value.tzinfo is None:
        return value.replace(tzinfo=UTC)
    return value.astimezone(UTC)


def utc_or_none(value: datetime | str | None) -> datetime | None:
    return None if value is None else utc(value)


def sqlite_time(value: datetime) -> str:
    """``value`` as SQLite stores it: naive UTC text that sorts as time does."""
    if value.utcoffset() is None:
        raise ValueError(f"naive datetime {value!r}: the stores keep aware UTC times")
    return value.astimezone(UTC).replace(tzinfo=None).isoformat(sep=" ", timespec="microseconds")


def sqlite_time_or_none(value: datetime | None) -> str | None:
    return None if value is None else sqlite_time(value)


#: Stored value -> member: a dict look-up, where the Enum call is two Python calls (five
#: records a round trip); a value not in it still goes through the Enum (and its error).
_KINDS: dict[str, MessageKind] = {kind.value: kind for kind in MessageKind}
_STATES: dict[str, MessageState] = {state.value: state for state in MessageState}


def message_of(row: Row) -> MessageRecord:
    """The record of a row with :data:`MESSAGE_HEAD` (and maybe ``xml``) columns."""
    xml = row.get("xml")
    kind, state = row["kind"], row["state"]
    return MessageRecord(
        message_id=row["message_id"],
        kind=_KINDS.get(kind) or MessageKind(kind),
        sender=row["sender"],
        recipient=row["recipient"],
        message_type=row["message_type"],
        in_reply_to=row["in_reply_to"],
        content_sha256=row["content_sha256"],
        xml=None if xml is None else bytes(xml),
        state=_STATES.get(state) or MessageState(state),
        created_at=utc(row["created_at"]),
        updated_at=utc(row["updated_at"]),
        expires_at=utc_or_none(row["expires_at"]),
        test_message=bool(row["test_message"]),
        version=int(row["version"]),
    )


def transition_of(row: Row) -> TransitionRecord:
    from_state = row["from_state"]
    return TransitionRecord(
        id=int(row["id"]),
        message_id=row["message_id"],
        from_state=None if from_state is None else MessageState(from_state),
        to_state=MessageState(row["to_state"]),
        at=utc(row["at"]),
        reason=row["reason"],
        actor=row["actor"],
    )


def callback_of(row: Row) -> Callback | None:
    """The callback stored in a ``service_requests`` row (``None``: it has none)."""
    if row["callback_state"] is None:
        return None
    return Callback(
        url=row["callback_url"],
        state=CallbackState(row["callback_state"]),
        attempts=int(row["callback_attempts"]),
        next_attempt_at=utc_or_none(row["callback_next_at"]),
        last_error=row["callback_last_error"],
        delivered_at=utc_or_none(row["callback_delivered_at"]),
    )


def service_request_of(row: Row) -> ServiceRequestRecord:
    """The record of a row with :data:`SERVICE_REQUEST_COLUMNS`."""
    return ServiceRequestRecord(
        state=ServiceRequestState.model_validate_json(row["state"]),
        participant=row["participant"],
        idempotency_key=row["idempotency_key"],
        next_deadline=utc_or_none(row["next_deadline"]),
        created_at=utc(row["created_at"]),
        updated_at=utc(row["updated_at"]),
        version=int(row["version"]),
        callback=callback_of(row),
        request_digest=row["request_digest"],
    )
