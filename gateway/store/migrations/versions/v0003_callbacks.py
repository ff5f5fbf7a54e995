"""Result callbacks: the outbox columns of service requests.

Revision ID: 0003
Revises: 0002
Create Date: 2026-01-03
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision: str = "0003"
down_revision: str | None = "0002"
branch_labels: str | None = None
depends_on: str | None = None

_COLUMNS = (
    "callback_url",
    "callback_state",
    "callback_attempts",
    "callback_next_at",
    "callback_last_error",
    "callback_delivered_at",
)


def upgrade() -> None:
    # Plain ADD COLUMNs (no batch mode): SQLite supports them as long as a NOT NULL
    # column has a default, so existing rows get "no callback" without a table copy.
    op.add_column("service_requests", sa.Column("callback_url", sa.String(2048), nullable=True))
    op.add_column("service_requests", sa.Column("callback_state", sa.String(16), nullable=True))
    op.add_column(
        "service_requests",
        sa.Column("callback_attempts", sa.Integer(), nullable=False, server_default="0"),
    )
    op.add_column(
        "service_requests",
        sa.Column("callback_next_at", sa.DateTime(timezone=True), nullable=True),
    )
    op.add_column("service_requests", sa.Column("callback_last_error", sa.Text(), nullable=True))
    op.add_column(
        "service_requests",
        sa.Column("callback_delivered_at", sa.DateTime(timezone=True), nullable=True),
    )
    op.create_index(
        op.f("ix_service_requests_callback_next_at"), "service_requests", ["callback_next_at"]
    )


def downgrade() -> None:
    op.drop_index(op.f("ix_service_requests_callback_next_at"), table_name="service_requests")
    with op.batch_alter_table("service_requests") as batch:
        for name in reversed(_COLUMNS):
            batch.drop_column(name)
