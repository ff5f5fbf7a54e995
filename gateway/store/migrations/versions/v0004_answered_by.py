"""One final answer per request: the request row names the answer that claimed it.

Revision ID: 0004
Revises: 0003
Create Date: 2026-01-04
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision: str = "0004"
down_revision: str | None = "0003"
branch_labels: str | None = None
depends_on: str | None = None

# Requests answered before this revision: their answer is not known by id here, so
# they are marked claimed by no id. A retry of their journaled answer stays
# idempotent (the router checks the journal when a claim fails); a new answer is
# refused, as before.
ANSWERED_BEFORE = "answered-before-0004"


def upgrade() -> None:
    op.add_column("messages", sa.Column("answered_by", sa.String(36), nullable=True))
    op.execute(
        sa.text(
            "UPDATE messages SET answered_by = :marker "
            "WHERE kind = 'request' AND state IN ('RESPONDED', 'RESPONSE_DELIVERED')"
        ).bindparams(marker=ANSWERED_BEFORE)
    )


def downgrade() -> None:
    with op.batch_alter_table("messages") as batch:
        batch.drop_column("answered_by")
