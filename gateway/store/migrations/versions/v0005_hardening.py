"""Hardening: the body digest behind an Idempotency-Key, and the pull replay guard.

Revision ID: 0005
Revises: 0004
Create Date: 2026-12-02

* ``service_requests.request_digest``: SHA-256 of the canonical JSON of the submitted
  body, so a retry under the same ``Idempotency-Key`` with another body is refused
  instead of silently answered with the first request.
* ``replay_guard``: the digests of signed pull requests (GetRequest, GetResponse, ...)
  seen within their timestamp window, shared by every gateway process, so a captured
  request posted again is refused. Rows past ``expires_at`` may be deleted at any time.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision: str = "0005"
down_revision: str | None = "0004"
branch_labels: str | None = None
depends_on: str | None = None


def upgrade() -> None:
    op.add_column("service_requests", sa.Column("request_digest", sa.String(64), nullable=True))
    op.create_table(
        "replay_guard",
        sa.Column("digest", sa.String(64), nullable=False),
        sa.Column("participant", sa.String(255), nullable=False),
        sa.Column("expires_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("digest", name=op.f("pk_replay_guard")),
    )
    op.create_index(op.f("ix_replay_guard_expires_at"), "replay_guard", ["expires_at"])


def downgrade() -> None:
    op.drop_index(op.f("ix_replay_guard_expires_at"), table_name="replay_guard")
    op.drop_table("replay_guard")
    with op.batch_alter_table("service_requests") as batch:
        batch.drop_column("request_digest")
