"""Service requests: aggregation state and the bus messages sent for their parts.

Revision ID: 0002
Revises: 0001
Create Date: 2026-01-02
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision: str = "0002"
down_revision: str | None = "0001"
branch_labels: str | None = None
depends_on: str | None = None


def upgrade() -> None:
    op.create_table(
        "service_requests",
        sa.Column("id", sa.String(36), nullable=False),
        sa.Column("service", sa.String(255), nullable=False),
        sa.Column("participant", sa.String(255), nullable=False),
        sa.Column("status", sa.String(32), nullable=False),
        sa.Column("completed_by", sa.String(32), nullable=True),
        sa.Column("idempotency_key", sa.String(255), nullable=True),
        sa.Column(
            "state",
            sa.JSON().with_variant(postgresql.JSONB(), "postgresql"),
            nullable=False,
        ),
        sa.Column("next_deadline", sa.DateTime(timezone=True), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("version", sa.Integer(), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_service_requests")),
        sa.UniqueConstraint(
            "participant",
            "idempotency_key",
            name=op.f("uq_service_requests_participant_idempotency_key"),
        ),
    )
    op.create_index(
        op.f("ix_service_requests_next_deadline"), "service_requests", ["next_deadline"]
    )
    op.create_index(
        op.f("ix_service_requests_status_created_at_id"),
        "service_requests",
        ["status", "created_at", "id"],
    )
    op.create_index(
        op.f("ix_service_requests_created_at_id"), "service_requests", ["created_at", "id"]
    )
    op.create_table(
        "service_request_messages",
        sa.Column("message_id", sa.String(36), nullable=False),
        sa.Column("service_request_id", sa.String(36), nullable=False),
        sa.Column("part_id", sa.String(255), nullable=False),
        sa.PrimaryKeyConstraint("message_id", name=op.f("pk_service_request_messages")),
        sa.ForeignKeyConstraint(
            ["service_request_id"],
            ["service_requests.id"],
            name=op.f("fk_service_request_messages_service_request_id_service_requests"),
            ondelete="CASCADE",
        ),
    )
    op.create_index(
        op.f("ix_service_request_messages_service_request_id"),
        "service_request_messages",
        ["service_request_id"],
    )


def downgrade() -> None:
    op.drop_table("service_request_messages")
    op.drop_table("service_requests")
