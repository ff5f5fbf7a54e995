"""Traffic over the last hour from the journal: rates and answer times per time step.

One aggregate statement (PostgreSQL or SQLite) over the messages created in the window,
the range the index ``ix_messages_kind_created_at`` (migration 0006) serves: per step,
how many messages the bus took (requests and responses), how many of them it refused or
failed (``REJECTED``, ``FAILED``: the faults it answered), and the p50/p95 of the answer
time of the requests sent in that step and answered since (request journaled -> final
answer journaled, as the KPIs measure it).
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime, timedelta
from typing import Any, Final

from gateway.ops.console_api import Rate
from gateway.ops.kpi_queries import (
    PERCENTILES,
    KpiDatabase,
    pg_percentiles,
    seconds_between,
    sqlite_percentiles,
)

WINDOW: Final = timedelta(hours=1)
STEPS: Final = 60


def _bucket(dialect: str, column: str, step_s: int) -> str:
    """The step (0-based from ``:start``) that ``column`` falls in."""
    if dialect == "postgresql":
        return f"FLOOR(EXTRACT(EPOCH FROM {column} - CAST(:start AS timestamptz)) / {step_s})::int"
    return f"CAST((julianday({column}) - julianday(:start)) * 86400.0 / {step_s} AS INTEGER)"


def traffic_sql(dialect: str, step_s: int) -> str:
    """Per step: ``bucket``, ``messages``, ``faults``, ``answer_p50_s``, ``answer_p95_s``."""
    window = "created_at >= :start AND created_at < :end"
    # Only constants are interpolated into these statements (noqa: S608 below).
    answers = f"""
    answers AS (
      SELECT {_bucket(dialect, "r.created_at", step_s)} AS bucket,
             {seconds_between(dialect, "a.created_at", "r.created_at")} AS answer_s
      FROM messages r JOIN messages a ON a.message_id = r.answered_by
      WHERE r.kind = 'request' AND r.created_at >= :start AND r.created_at < :end
    )"""  # noqa: S608
    if dialect == "postgresql":
        pct = f"""
    pct AS (
      SELECT bucket, {pg_percentiles("answer_s", "answer")} FROM answers GROUP BY bucket
    )"""  # noqa: S608
    else:
        pct = f"""
    ranked AS (
      SELECT bucket, answer_s,
             ROW_NUMBER() OVER (PARTITION BY bucket ORDER BY answer_s) - 1 AS i,
             COUNT(*) OVER (PARTITION BY bucket) AS n
      FROM answers
    ),
    pct AS (
      SELECT bucket, {sqlite_percentiles("answer_s", "answer")} FROM ranked GROUP BY bucket
    )"""  # noqa: S608
    return f"""
    WITH counts AS (
      SELECT {_bucket(dialect, "created_at", step_s)} AS bucket, COUNT(*) AS messages,
             SUM(CASE WHEN state IN ('REJECTED', 'FAILED') THEN 1 ELSE 0 END) AS faults
      FROM messages
      WHERE kind IN ('request', 'response') AND {window}
      GROUP BY 1
    ),
    {answers},
    {pct}
    SELECT c.bucket, c.messages, c.faults,
           {", ".join(f"p.answer_{name}_s" for name, _ in PERCENTILES)}
    FROM counts c LEFT JOIN pct p ON p.bucket = c.bucket
    ORDER BY c.bucket"""  # noqa: S608


async def traffic(
    db: KpiDatabase, *, now: datetime, window: timedelta = WINDOW, steps: int = STEPS
) -> tuple[Rate, ...]:
    """``steps`` rates over ``window`` up to ``now``, oldest first; each ``at`` the end of
    its step."""
    step_s = int(window.total_seconds()) // steps
    start = now - timedelta(seconds=step_s * steps)
    rows = await db.fetch(traffic_sql(db.dialect, step_s), {"start": start, "end": now})
    found = {int(row["bucket"]): row for row in rows}
    return tuple(
        _rate(found.get(i), at=start + timedelta(seconds=step_s * (i + 1)), step_s=step_s)
        for i in range(steps)
    )


def _rate(row: Mapping[str, Any] | None, *, at: datetime, step_s: int) -> Rate:
    def seconds(name: str) -> float | None:
        value = None if row is None else row[name]
        return None if value is None else round(float(value), 3)

    return Rate(
        at=at,
        window_s=float(step_s),
        messages_per_s=(int(row["messages"]) if row else 0) / step_s,
        faults_per_s=(int(row["faults"] or 0) if row else 0) / step_s,
        latency_p50_s=seconds("answer_p50_s"),
        latency_p95_s=seconds("answer_p95_s"),
    )
