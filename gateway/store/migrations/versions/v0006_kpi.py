"""KPIs: the rejection code of a response in a column, and indexes for the KPI queries.

Revision ID: 0006
Revises: 0005
Create Date: 2026-12-10

* ``messages.rejection_code``: on a response, the ``RejectionReasonCode`` of its
  first ``RequestRejected`` (``AGENCY_UNAVAILABLE``, ``NO_DATA``, ...); NULL on an
  answer with content or a status, and on every request. The KPIs
  (``gateway.ops.kpi``) class requests by it in SQL instead of reading XML.
  Existing responses are filled in from their journaled XML: only those whose bytes
  contain ``RequestRejected`` are read.
* ``ix_messages_kind_created_at``: requests by creation time, the range every KPI
  query scans.
* ``ix_service_requests_service_created_at``: service requests per service in a
  period.
"""

from __future__ import annotations

from typing import Final

import sqlalchemy as sa
from alembic import op
from lxml import etree

revision: str = "0006"
down_revision: str | None = "0005"
branch_labels: str | None = None
depends_on: str | None = None

_TYPES: Final = "urn://x-artefacts-smev-gov-ru/services/message-exchange/types/1.1"
_CODE: Final = f"{{{_TYPES}}}RejectionReasonCode"
_MARK: Final = b"RequestRejected"
_FIND: Final = (
    "SELECT message_id, xml FROM messages WHERE kind = 'response' AND message_id > :after "
    "AND {contains} ORDER BY message_id LIMIT 1000"
)
_FIND_PG: Final = _FIND.format(contains="position(:mark IN xml) > 0")
_FIND_SQLITE: Final = _FIND.format(contains="instr(xml, :mark) > 0")


def upgrade() -> None:
    op.add_column("messages", sa.Column("rejection_code", sa.String(64), nullable=True))
    op.create_index(op.f("ix_messages_kind_created_at"), "messages", ["kind", "created_at"])
    op.create_index(
        op.f("ix_service_requests_service_created_at"),
        "service_requests",
        ["service", "created_at"],
    )
    _fill_rejection_codes(op.get_bind())


def downgrade() -> None:
    op.drop_index(op.f("ix_service_requests_service_created_at"), table_name="service_requests")
    op.drop_index(op.f("ix_messages_kind_created_at"), table_name="messages")
    with op.batch_alter_table("messages") as batch:
        batch.drop_column("rejection_code")


def _fill_rejection_codes(connection: sa.Connection) -> None:
    find = sa.text(
        _FIND_PG if connection.dialect.name == "postgresql" else _FIND_SQLITE
    ).bindparams(sa.bindparam("mark", type_=sa.LargeBinary()))
    update = sa.text("UPDATE messages SET rejection_code = :code WHERE message_id = :id")
    after = ""
    while rows := connection.execute(find, {"mark": _MARK, "after": after}).all():
        codes = [{"id": mid, "code": code} for mid, xml in rows if (code := _code_of(xml))]
        if codes:
            connection.execute(update, codes)
        after = rows[-1][0]


def _code_of(xml: bytes) -> str | None:
    # The bus wrote and verified this XML itself; still no entities, no network.
    parser = etree.XMLParser(resolve_entities=False, no_network=True, load_dtd=False)
    try:
        root = etree.fromstring(xml, parser)
    except etree.XMLSyntaxError:
        return None
    code = next(root.iter(_CODE), None)
    return None if code is None or not code.text else code.text.strip()[:64]
