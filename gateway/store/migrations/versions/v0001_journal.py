"""The message journal: messages and their state transitions.

Revision ID: 0001
Revises:
Create Date: 2026-01-01
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision: str = "0001"
down_revision: str | None = None
branch_labels: str | None = None
depends_on: str | None = None


def upgrade() -> None:
    op.create_table(
        "messages",
        sa.Column("message_id", sa.String(36), nullable=False),
        sa.Column("kind", sa.String(16), nullable=False),
        sa.Column("sender", sa.String(255), nullable=False),
        sa.Column("recipient", sa.String(255), nullable=False),
        sa.Column("message_type", sa.String(1024), nullable=False),
        sa.Column("in_reply_to", sa.String(36), nullable=True),
        sa.Column("content_sha256", sa.String(64), nullable=False),
        sa.Column("xml", sa.LargeBinary(), nullable=False),
        sa.Column("state", sa.String(32), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("expires_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("test_message", sa.Boolean(create_constraint=False), nullable=False),
        sa.Column("version", sa.Integer(), nullable=False),
        sa.PrimaryKeyConstraint("message_id", name=op.f("pk_messages")),
        sa.CheckConstraint("kind IN ('request', 'response')", name=op.f("ck_messages_kind")),
    )
    op.create_index(op.f("ix_messages_recipient_state"), "messages", ["recipient", "state"])
    op.create_index(op.f("ix_messages_sender"), "messages", ["sender"])
    op.create_index(op.f("ix_messages_in_reply_to"), "messages", ["in_reply_to"])
    op.create_index(
        op.f("ix_messages_created_at_message_id"), "messages", ["created_at", "message_id"]
    )
    op.create_table(
        "transitions",
        sa.Column(
            "id",
            sa.BigInteger().with_variant(sa.Integer(), "sqlite"),
            autoincrement=True,
            nullable=False,
        ),
        sa.Column("message_id", sa.String(36), nullable=False),
        sa.Column("from_state", sa.String(32), nullable=True),
        sa.Column("to_state", sa.String(32), nullable=False),
        sa.Column("at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("reason", sa.Text(), nullable=True),
        sa.Column("actor", sa.String(255), nullable=True),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_transitions")),
        sa.ForeignKeyConstraint(
            ["message_id"],
            ["messages.message_id"],
            name=op.f("fk_transitions_message_id_messages"),
            ondelete="CASCADE",
        ),
    )
    op.create_index(op.f("ix_transitions_message_id_id"), "transitions", ["message_id", "id"])


def downgrade() -> None:
    op.drop_table("transitions")
    op.drop_table("messages")
