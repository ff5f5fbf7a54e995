"""Opaque keyset cursors for :meth:`Store.find`: the (created_at, message_id) of the last row."""

from __future__ import annotations

import base64
import binascii
import uuid
from datetime import datetime


def encode_cursor(created_at: datetime, message_id: str) -> str:
    raw = f"{created_at.isoformat()}|{message_id}".encode()
    return base64.urlsafe_b64encode(raw).decode("ascii").rstrip("=")


def decode_cursor(cursor: str) -> tuple[datetime, str]:
    """Raises ``ValueError`` for anything :func:`encode_cursor` did not make (the id is a
    UUID, in its canonical form: nothing else reaches a query)."""
    try:
        raw = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)).decode()
        when, message_id = raw.split("|", 1)
        created_at = datetime.fromisoformat(when)
        message_id = str(uuid.UUID(message_id))
    except (binascii.Error, UnicodeDecodeError, ValueError):
        raise ValueError(f"malformed page cursor {cursor!r}") from None
    if created_at.utcoffset() is None:
        raise ValueError(f"malformed page cursor {cursor!r}")
    return created_at, message_id
