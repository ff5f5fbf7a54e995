"""The outbox relay's index: messages still ACCEPTED, oldest first.

Revision ID: 0007
Revises: 0006
Create Date: 2026-12-03

``gateway.router.outbox.Relay`` looks every few seconds for messages journaled
ACCEPTED and never queued (their process died before publishing them). Almost every
message leaves ACCEPTED within milliseconds, so a partial index holds only those few
and the look stays cheap over millions of journal rows.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision: str = "0007"
down_revision: str | None = "0006"
branch_labels: str | None = None
depends_on: str | None = None

_ACCEPTED = sa.text("state = 'ACCEPTED'")


def upgrade() -> None:
    op.create_index(
        "ix_messages_accepted_created_at",
        "messages",
        ["created_at", "message_id"],
        postgresql_where=_ACCEPTED,
        sqlite_where=_ACCEPTED,
    )


def downgrade() -> None:
    op.drop_index("ix_messages_accepted_created_at", table_name="messages")
