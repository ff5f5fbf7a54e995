"""Table definitions of the journal and of service requests, for queries (SQLAlchemy Core).

The schema itself is only ever created by the Alembic migrations in
``gateway/store/migrations``; a test checks that they and these tables agree.
"""

from __future__ import annotations

from datetime import UTC, datetime

from sqlalchemy import (
    JSON,
    BigInteger,
    Boolean,
    CheckConstraint,
    Column,
    DateTime,
    Dialect,
    ForeignKey,
    Index,
    Integer,
    LargeBinary,
    MetaData,
    String,
    Table,
    Text,
    UniqueConstraint,
    text,
)
from sqlalchemy.dialects.postgresql import JSONB
from sqlalchemy.types import TypeDecorator

NAMING_CONVENTION = {
    "ix": "ix_%(table_name)s_%(column_0_N_name)s",
    "uq": "uq_%(table_name)s_%(column_0_N_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}

metadata = MetaData(naming_convention=NAMING_CONVENTION)


class UtcDateTime(TypeDecorator[datetime]):
    """A timestamp that goes in timezone-aware and comes out timezone-aware UTC.

    PostgreSQL stores ``timestamptz``; SQLite stores naive UTC text, which sorts and
    compares correctly because every value is converted to UTC first.
    """

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        if value.utcoffset() is None:
            raise ValueError(f"naive datetime {value!r}: the journal stores aware UTC times")
        value = value.astimezone(UTC)
        return value.replace(tzinfo=None) if dialect.name == "sqlite" else value

    def process_result_value(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            return value.replace(tzinfo=UTC)
        return value.astimezone(UTC)


# SQLite only auto-increments a column declared exactly INTEGER PRIMARY KEY.
_SERIAL = BigInteger().with_variant(Integer(), "sqlite")

messages = Table(
    "messages",
    metadata,
    Column("message_id", String(36), primary_key=True),
    Column("kind", String(16), nullable=False),
    Column("sender", String(255), nullable=False),
    Column("recipient", String(255), nullable=False),
    Column("message_type", String(1024), nullable=False),
    Column("in_reply_to", String(36), nullable=True),
    Column("content_sha256", String(64), nullable=False),
    Column("xml", LargeBinary(), nullable=False),
    Column("state", String(32), nullable=False),
    Column("created_at", UtcDateTime(), nullable=False),
    Column("updated_at", UtcDateTime(), nullable=False),
    Column("expires_at", UtcDateTime(), nullable=True),
    Column("test_message", Boolean(create_constraint=False), nullable=False),
    Column("version", Integer(), nullable=False),
    # On a request: the MessageID of its final answer, claimed before it is journaled.
    Column("answered_by", String(36), nullable=True),
    # On a response: the RejectionReasonCode of its first RequestRejected, else NULL.
    Column("rejection_code", String(64), nullable=True),
    CheckConstraint("kind IN ('request', 'response')", name="kind"),
    Index("ix_messages_recipient_state", "recipient", "state"),
    Index("ix_messages_sender", "sender"),
    Index("ix_messages_in_reply_to", "in_reply_to"),
    Index("ix_messages_created_at_message_id", "created_at", "message_id"),
    Index("ix_messages_kind_created_at", "kind", "created_at"),
    # The outbox relay's look for messages left ACCEPTED (gateway.router.outbox).
    Index(
        "ix_messages_accepted_created_at",
        "created_at",
        "message_id",
        postgresql_where=text("state = 'ACCEPTED'"),
        sqlite_where=text("state = 'ACCEPTED'"),
    ),
)

transitions = Table(
    "transitions",
    metadata,
    Column("id", _SERIAL, primary_key=True, autoincrement=True),
    Column(
        "message_id",
        String(36),
        ForeignKey("messages.message_id", ondelete="CASCADE"),
        nullable=False,
    ),
    Column("from_state", String(32), nullable=True),
    Column("to_state", String(32), nullable=False),
    Column("at", UtcDateTime(), nullable=False),
    Column("reason", Text(), nullable=True),
    Column("actor", String(255), nullable=True),
    Index("ix_transitions_message_id_id", "message_id", "id"),
)

# JSONB on PostgreSQL, JSON text on SQLite.
_JSON = JSON().with_variant(JSONB(), "postgresql")

# One row per service request (gateway.store.service_requests): the serialized
# ServiceRequestState in ``state``; status, completed_by and next_deadline are copies
# of it kept in columns for queries. ``version`` is the compare-and-set counter.
# The ``callback_*`` columns are the result-callback outbox (gateway.store.callbacks):
# NULL ``callback_state`` means no callback; the save that makes the request final
# moves ``pending`` to ``due`` in the same UPDATE. Outbox writes leave ``version`` alone.
service_requests = Table(
    "service_requests",
    metadata,
    Column("id", String(36), primary_key=True),
    Column("service", String(255), nullable=False),
    Column("participant", String(255), nullable=False),
    Column("status", String(32), nullable=False),
    Column("completed_by", String(32), nullable=True),
    Column("idempotency_key", String(255), nullable=True),
    Column("state", _JSON, nullable=False),
    Column("next_deadline", UtcDateTime(), nullable=True),
    Column("created_at", UtcDateTime(), nullable=False),
    Column("updated_at", UtcDateTime(), nullable=False),
    Column("version", Integer(), nullable=False),
    Column("callback_url", String(2048), nullable=True),
    Column("callback_state", String(16), nullable=True),
    Column("callback_attempts", Integer(), nullable=False, server_default="0"),
    Column("callback_next_at", UtcDateTime(), nullable=True),
    Column("callback_last_error", Text(), nullable=True),
    Column("callback_delivered_at", UtcDateTime(), nullable=True),
    # SHA-256 of the canonical JSON body first submitted under ``idempotency_key``.
    Column("request_digest", String(64), nullable=True),
    UniqueConstraint("participant", "idempotency_key"),
    Index("ix_service_requests_next_deadline", "next_deadline"),
    Index("ix_service_requests_status_created_at_id", "status", "created_at", "id"),
    Index("ix_service_requests_created_at_id", "created_at", "id"),
    Index("ix_service_requests_callback_next_at", "callback_next_at"),
    Index("ix_service_requests_service_created_at", "service", "created_at"),
)

# The bus MessageID of each part's request -> the service request and part it serves.
service_request_messages = Table(
    "service_request_messages",
    metadata,
    Column("message_id", String(36), primary_key=True),
    Column(
        "service_request_id",
        String(36),
        ForeignKey("service_requests.id", ondelete="CASCADE"),
        nullable=False,
    ),
    Column("part_id", String(255), nullable=False),
    Index("ix_service_request_messages_service_request_id", "service_request_id"),
)

# Digests of signed pull requests seen within their timestamp window (replay guard),
# shared by every gateway process; rows past ``expires_at`` are dead and may go.
replay_guard = Table(
    "replay_guard",
    metadata,
    Column("digest", String(64), primary_key=True),
    Column("participant", String(255), nullable=False),
    Column("expires_at", UtcDateTime(), nullable=False),
    Index("ix_replay_guard_expires_at", "expires_at"),
)
