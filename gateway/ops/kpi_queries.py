"""The SQL behind the KPIs: one aggregate query per table, for PostgreSQL and SQLite.

The queries run entirely in the database (no rows come back but one per group) over
the journal's ``messages`` and the ``service_requests`` tables:

* every *request* created in ``[start, end)``, not a test message, that reached its
  agency's queue (not ``REJECTED`` or ``FAILED`` by the bus), is classed by how it
  ended: ``answered`` (its final answer carries data), ``rejected`` (a refusal other
  than ``AGENCY_UNAVAILABLE``), ``unavailable`` (``AGENCY_UNAVAILABLE``),
  ``timed_out`` (``EXPIRED``, or still unanswered ``answer_timeout`` after it was
  sent), ``dead_lettered`` (or purged from the dead-letter queue since), or
  ``pending`` (unanswered and younger than that);
  the answer time is the final answer's journal time minus the request's, for
  ``answered`` and ``rejected``;
* grouped per (agency, message type) and per agency (``message_type`` NULL);
* per service: status counts and the time to result (``updated_at - created_at``
  of final requests, cancelled ones excluded: a final save is the last write
  that touches ``updated_at``).

Percentiles are continuous (linear interpolation between the two nearest ranks):
PostgreSQL's ``percentile_cont``; on SQLite, which has none, the same formula over
``ROW_NUMBER()`` and ``COUNT(*)`` windows: for ``n`` ordered values and fraction
``p``, position ``h = p * (n - 1)``, value ``v[floor h] + (h - floor h) *
(v[floor h + 1] - v[floor h])``. SQLite's date functions count milliseconds, so
its durations are whole milliseconds.

Statements take ``:name`` parameters and run through :class:`KpiDatabase`, a protocol
of one method so that the store runtime can provide it on any driver.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import datetime
from typing import Any, Final, Protocol

from sqlalchemy import bindparam, event, text
from sqlalchemy.ext.asyncio import AsyncEngine

from gateway.store.base import Journal
from gateway.store.engine import create_engine
from gateway.store.journal_pg import PgJournal
from gateway.store.journal_sqlite import SqliteJournal
from gateway.store.schema import UtcDateTime

#: The percentiles reported, as (column suffix, fraction).
PERCENTILES: Final = (("p50", 0.5), ("p95", 0.95))
#: The outcomes a request is classed into (see the module docstring).
OUTCOMES: Final = ("answered", "rejected", "unavailable", "timed_out", "dead_lettered", "pending")
#: Service-request statuses counted.
SERVICE_STATUSES: Final = ("COMPLETED", "PARTIAL", "FAILED", "TIMED_OUT", "CANCELLED", "PENDING")
_TIMED_STATUSES = "('COMPLETED', 'PARTIAL', 'FAILED', 'TIMED_OUT')"
_AGENCY_UNAVAILABLE = "AGENCY_UNAVAILABLE"

Params = Mapping[str, datetime | str]


class KpiDatabase(Protocol):
    """Where the KPI queries run: the journal's database, read only."""

    @property
    def dialect(self) -> str:
        """``"postgresql"`` or ``"sqlite"``."""
        ...

    async def fetch(self, sql: str, params: Params) -> Sequence[Mapping[str, Any]]:
        """Run ``sql`` with ``:name`` parameters (datetimes aware) and return its rows."""
        ...

    async def close(self) -> None:
        """Release its connections."""
        ...


class EngineKpiDatabase:
    """:class:`KpiDatabase` over a SQLAlchemy async engine (the journal's)."""

    def __init__(self, engine: AsyncEngine) -> None:
        self._engine = engine

    @property
    def dialect(self) -> str:
        return self._engine.dialect.name

    async def fetch(self, sql: str, params: Params) -> Sequence[Mapping[str, Any]]:
        statement = text(sql).bindparams(
            *(
                bindparam(name, type_=UtcDateTime())
                for name, value in params.items()
                if isinstance(value, datetime)
            )
        )
        async with self._engine.connect() as connection:
            result = await connection.execute(statement, dict(params))
            return [dict(row) for row in result.mappings()]

    async def close(self) -> None:
        await self._engine.dispose()


#: Connections the operators' reads may hold: they never take the journal's own.
OPS_POOL_SIZE: Final = 2


def ops_database(journal: Journal) -> EngineKpiDatabase | None:
    """A read connection pool on ``journal``'s database for the operators' queries (KPIs,
    queue ages), apart from the journal's own pool, so that a slow operator query never
    holds a connection a message needs. ``None`` for a journal on no SQL database."""
    if isinstance(journal, PgJournal):
        db = journal.database
        return EngineKpiDatabase(create_engine(db.url, schema=db.schema, pool_size=OPS_POOL_SIZE))
    if isinstance(journal, SqliteJournal):
        # A second connection: WAL lets it read while the journal's connection writes.
        engine = create_engine(journal.database.migration_url)
        if journal.database.memory:
            # In a shared-cache (in-memory) database a reader's table locks would make the
            # journal's writes fail ("table is locked"); reading uncommitted takes none.
            event.listen(engine.sync_engine, "connect", _read_uncommitted)
        return EngineKpiDatabase(engine)
    return None


def _read_uncommitted(dbapi_connection: Any, _record: Any) -> None:
    cursor = dbapi_connection.cursor()
    try:
        cursor.execute("PRAGMA read_uncommitted = 1")
    finally:
        cursor.close()


# --- SQL -------------------------------------------------------------------------------


def seconds_between(dialect: str, later: str, earlier: str) -> str:
    """SQL for ``later - earlier`` in seconds (SQLite: to the millisecond)."""
    if dialect == "postgresql":
        return f"EXTRACT(EPOCH FROM {later} - {earlier})::float8"
    return f"ROUND((julianday({later}) - julianday({earlier})) * 86400000.0) / 1000.0"


def _classified(dialect: str, *, by_agency: bool) -> str:
    """One row per request in the window: agency, message_type, outcome, answer_s."""
    agency = "AND r.recipient = :agency" if by_agency else ""
    return f"""
    classified AS (
      SELECT agency, message_type, outcome,
             CASE WHEN outcome IN ('answered', 'rejected') THEN seconds END AS answer_s
      FROM (
        SELECT r.recipient AS agency, r.message_type AS message_type,
               {seconds_between(dialect, "a.created_at", "r.created_at")} AS seconds,
               CASE
                 WHEN r.state IN ('RESPONDED', 'RESPONSE_DELIVERED') THEN
                   CASE WHEN a.rejection_code IS NULL THEN 'answered'
                        WHEN a.rejection_code = '{_AGENCY_UNAVAILABLE}' THEN 'unavailable'
                        ELSE 'rejected' END
                 WHEN r.state = 'EXPIRED' THEN 'timed_out'
                 WHEN r.state IN ('DEAD_LETTERED', 'PURGED') THEN 'dead_lettered'
                 WHEN r.created_at < :overdue_before THEN 'timed_out'
                 ELSE 'pending'
               END AS outcome
        FROM messages r
        LEFT JOIN messages a ON a.message_id = r.answered_by AND a.kind = 'response'
        WHERE r.kind = 'request' AND r.test_message = false
          AND r.created_at >= :start AND r.created_at < :end
          AND r.state NOT IN ('REJECTED', 'FAILED') {agency}
      ) AS requests
    )"""  # noqa: S608 (only constants are interpolated)


def _counts(column: str, values: Sequence[str]) -> str:
    return ",\n".join(
        f"SUM(CASE WHEN {column} = '{v}' THEN 1 ELSE 0 END) AS {v.lower()}" for v in values
    )


def agency_sql(dialect: str, *, by_agency: bool) -> str:
    """Per (agency, message_type) and per agency (``message_type`` NULL): volume, one
    count per outcome, ``answer_p50_s``, ``answer_p95_s``."""
    counts = _counts("outcome", OUTCOMES)
    classified = _classified(dialect, by_agency=by_agency)
    if dialect == "postgresql":
        return f"""
        WITH {classified}
        SELECT agency, message_type, COUNT(*) AS volume, {counts},
               {pg_percentiles("answer_s", "answer")}
        FROM classified
        GROUP BY GROUPING SETS ((agency, message_type), (agency))
        ORDER BY agency, message_type NULLS FIRST"""  # noqa: S608 (only constants are interpolated)
    # SQLite has no GROUPING SETS and no percentile_cont: both levels by UNION ALL.
    return f"""
    WITH {classified},
    timed AS (SELECT agency, message_type, answer_s FROM classified WHERE answer_s IS NOT NULL),
    counts AS (
      SELECT agency, message_type, COUNT(*) AS volume, {counts}
      FROM classified GROUP BY agency, message_type
      UNION ALL
      SELECT agency, NULL, COUNT(*), {counts}
      FROM classified GROUP BY agency
    ),
    ranked AS (
      SELECT agency, message_type, answer_s,
             ROW_NUMBER() OVER (PARTITION BY agency, message_type ORDER BY answer_s) - 1 AS i,
             COUNT(*) OVER (PARTITION BY agency, message_type) AS n
      FROM timed
      UNION ALL
      SELECT agency, NULL, answer_s,
             ROW_NUMBER() OVER (PARTITION BY agency ORDER BY answer_s) - 1,
             COUNT(*) OVER (PARTITION BY agency)
      FROM timed
    ),
    pct AS (
      SELECT agency, message_type, {sqlite_percentiles("answer_s", "answer")}
      FROM ranked GROUP BY agency, message_type
    )
    SELECT c.*, {", ".join(f"p.answer_{name}_s" for name, _ in PERCENTILES)}
    FROM counts c
    LEFT JOIN pct p ON p.agency = c.agency AND p.message_type IS c.message_type
    ORDER BY c.agency, c.message_type"""  # noqa: S608 (only constants are interpolated)


def service_sql(dialect: str) -> str:
    """Per service: volume, one count per status, ``result_p50_s``, ``result_p95_s``."""
    counts = _counts("status", SERVICE_STATUSES)
    seconds = seconds_between(dialect, "updated_at", "created_at")
    window = "created_at >= :start AND created_at < :end"
    if dialect == "postgresql":
        return f"""
        WITH requests AS (
          SELECT service, status,
                 CASE WHEN status IN {_TIMED_STATUSES} THEN {seconds} END AS result_s
          FROM service_requests WHERE {window}
        )
        SELECT service, COUNT(*) AS volume, {counts}, {pg_percentiles("result_s", "result")}
        FROM requests GROUP BY service ORDER BY service"""  # noqa: S608 (only constants are interpolated)
    return f"""
    WITH requests AS (
      SELECT service, status,
             CASE WHEN status IN {_TIMED_STATUSES} THEN {seconds} END AS result_s
      FROM service_requests WHERE {window}
    ),
    counts AS (SELECT service, COUNT(*) AS volume, {counts} FROM requests GROUP BY service),
    ranked AS (
      SELECT service, result_s,
             ROW_NUMBER() OVER (PARTITION BY service ORDER BY result_s) - 1 AS i,
             COUNT(*) OVER (PARTITION BY service) AS n
      FROM requests WHERE result_s IS NOT NULL
    ),
    pct AS (
      SELECT service, {sqlite_percentiles("result_s", "result")}
      FROM ranked GROUP BY service
    )
    SELECT c.*, {", ".join(f"p.result_{name}_s" for name, _ in PERCENTILES)}
    FROM counts c LEFT JOIN pct p ON p.service = c.service
    ORDER BY c.service"""  # noqa: S608 (only constants are interpolated)


def pg_percentiles(column: str, prefix: str) -> str:
    return ",\n".join(
        f"percentile_cont({p}) WITHIN GROUP (ORDER BY {column}) "
        f"FILTER (WHERE {column} IS NOT NULL) AS {prefix}_{name}_s"
        for name, p in PERCENTILES
    )


def sqlite_percentiles(column: str, prefix: str) -> str:
    """Continuous percentiles over ``ranked`` rows (``i`` from 0, ``n`` per group)."""
    parts = []
    for name, p in PERCENTILES:
        h = f"({p} * (n - 1))"
        lo = f"CAST({h} AS INTEGER)"
        parts.append(
            f"MAX(CASE WHEN i = {lo} THEN {column} END) + "
            f"MAX(CASE WHEN i = {lo} THEN {h} - {lo} END) * "
            f"(COALESCE(MAX(CASE WHEN i = {lo} + 1 THEN {column} END), "
            f"MAX(CASE WHEN i = {lo} THEN {column} END)) - "
            f"MAX(CASE WHEN i = {lo} THEN {column} END)) AS {prefix}_{name}_s"
        )
    return ",\n".join(parts)
