"""Rows into records: both backends' column values map to the same record."""

from datetime import UTC, datetime, timedelta, timezone

import pytest

from gateway.core.envelope import MessageKind
from gateway.core.lifecycle import MessageState
from gateway.store.rows import message_of, utc

AT = datetime(2026, 12, 3, 17, 0, 0, 123456, tzinfo=UTC)


@pytest.mark.parametrize(
    "stored",
    [
        AT,  # asyncpg
        AT.astimezone(timezone(timedelta(hours=3))),
        AT.replace(tzinfo=None),  # SQLite: naive UTC
        "2026-12-03 17:00:00.123456",
    ],
)
def test_stored_times_become_aware_utc(stored: datetime | str) -> None:
    value = utc(stored)
    assert value == AT
    assert value.tzinfo is UTC


def row(**changes: object) -> dict[str, object]:
    base: dict[str, object] = {
        "message_id": "2cfff786-ef40-11f1-95fd-02fc00000001",
        "kind": "request",
        "sender": "PORTAL",
        "recipient": "ZAGS",
        "message_type": "urn:t",
        "in_reply_to": None,
        "content_sha256": "0" * 64,
        "state": "QUEUED",
        "created_at": AT,
        "updated_at": AT,
        "expires_at": None,
        "test_message": 0,
        "version": 2,
    }
    return base | changes


def test_a_row_becomes_a_record_with_enum_members() -> None:
    record = message_of(row())
    assert record.kind is MessageKind.REQUEST
    assert record.state is MessageState.QUEUED
    assert (record.created_at, record.expires_at, record.xml) == (AT, None, None)


@pytest.mark.parametrize("column", ["kind", "state"])
def test_a_value_outside_the_enum_is_a_value_error(column: str) -> None:
    with pytest.raises(ValueError, match="is not a valid"):
        message_of(row(**{column: "teleported"}))
