"""KPI queries over a million journal rows on PostgreSQL, with and without their indexes.

Seeds a fresh schema (``kpi_bench_<random>``, dropped at the end) of the migrated
journal with ``generate_series``: ``--requests`` requests (default 515 464) spread
over 30 days across 5 agencies x 4 message types, and an answer row for 94 % of them,
about 1 000 000 ``messages`` rows in all; plus ``--services`` service requests
(default 100 000). Outcomes by request number mod 100: 0-84 answered, 85-89 refused
``NO_DATA``, 90-93 ``AGENCY_UNAVAILABLE``, 94-95 ``EXPIRED``, 96 ``DEAD_LETTERED``,
97-99 unanswered. Each row's XML is 300 bytes (a real journal's signed XML is
larger and mostly TOASTed out of the heap, so the heap here is, if anything, wider).

Then, for a 30-day, a 1-day and a 1-hour window (the last is what the availability
gauge asks every minute), the agency query and the service query of
``gateway.ops.kpi`` run ``--repeat`` times each (best and median printed), and the
ops console's traffic query over the last hour (``gateway.ops.traffic``), first
with the indexes of migration 0006 and then, as the baseline in the same run,
without them (dropped).

Run: .venv/bin/python benchmarks/kpi.py [--url postgresql://postgres@127.0.0.1:5432/test]
     [--requests 515464] [--services 100000] [--repeat 5]
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import sys
import time
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from sqlalchemy import text  # noqa: E402
from sqlalchemy.ext.asyncio import AsyncEngine  # noqa: E402

from gateway.ops.kpi import DEFAULT_ANSWER_TIMEOUT  # noqa: E402
from gateway.ops.kpi_queries import EngineKpiDatabase, agency_sql, service_sql  # noqa: E402
from gateway.ops.traffic import traffic_sql  # noqa: E402
from gateway.store.engine import create_engine  # noqa: E402
from gateway.store.migrate import upgrade  # noqa: E402

BASE = datetime(2026, 1, 1, tzinfo=UTC)
DAYS = 30
INDEXES = {
    "ix_messages_kind_created_at": "messages (kind, created_at)",
    "ix_service_requests_service_created_at": "service_requests (service, created_at)",
}

SEED_REQUESTS = """
INSERT INTO messages (message_id, kind, sender, recipient, message_type, in_reply_to,
    content_sha256, xml, state, created_at, updated_at, expires_at, test_message, version,
    answered_by)
SELECT md5('q' || i)::uuid::text, 'request', 'PORTAL' || (i % 3),
       (ARRAY['ZAGS', 'MVD_MIGR', 'FNS', 'PFR', 'ROSREESTR'])[1 + i % 5],
       'urn://smevbus/types/bench/type-' || (i / 5 % 4) || '/1.0', NULL,
       repeat('0', 64), convert_to(repeat('<x/>', 75), 'UTF8'),
       CASE WHEN i % 100 < 94 THEN 'RESPONDED'
            WHEN i % 100 < 96 THEN 'EXPIRED'
            WHEN i % 100 = 96 THEN 'DEAD_LETTERED'
            ELSE 'ACKED' END,
       :base + (i * :span / :n) * interval '1 second',
       :base + (i * :span / :n) * interval '1 second', NULL, false, 2,
       CASE WHEN i % 100 < 94 THEN md5('a' || i)::uuid::text END
FROM generate_series(0, :n - 1) AS i
"""

SEED_ANSWERS = """
INSERT INTO messages (message_id, kind, sender, recipient, message_type, in_reply_to,
    content_sha256, xml, state, created_at, updated_at, expires_at, test_message, version,
    rejection_code)
SELECT md5('a' || i)::uuid::text, 'response',
       (ARRAY['ZAGS', 'MVD_MIGR', 'FNS', 'PFR', 'ROSREESTR'])[1 + i % 5], 'PORTAL' || (i % 3),
       'urn://smevbus/types/bench/type-' || (i / 5 % 4) || '/1.0', md5('q' || i)::uuid::text,
       repeat('0', 64), convert_to(repeat('<x/>', 75), 'UTF8'), 'ACKED',
       :base + (i * :span / :n) * interval '1 second'
           + (0.2 + (i % 997) / 50.0) * interval '1 second',
       :base + (i * :span / :n) * interval '1 second', NULL, false, 4,
       CASE WHEN i % 100 >= 90 THEN 'AGENCY_UNAVAILABLE'
            WHEN i % 100 >= 85 THEN 'NO_DATA' END
FROM generate_series(0, :n - 1) AS i WHERE i % 100 < 94
"""

SEED_SERVICES = """
INSERT INTO service_requests (id, service, participant, status, completed_by, state,
    next_deadline, created_at, updated_at, version)
SELECT md5('s' || i)::uuid::text, 'service-' || (i % 6), 'PORTAL' || (i % 3),
       (ARRAY['COMPLETED', 'COMPLETED', 'COMPLETED', 'COMPLETED', 'PARTIAL', 'FAILED',
              'TIMED_OUT', 'PENDING'])[1 + i % 8], NULL, '{}'::jsonb, NULL,
       :base + (i * :span / :n) * interval '1 second',
       :base + (i * :span / :n) * interval '1 second' + (i % 600) * interval '1 second', 2
FROM generate_series(0, :n - 1) AS i
"""


def _typed(sql: str) -> str:
    """asyncpg infers a parameter's type from its use; name it where it cannot."""
    for name, sql_type in (("base", "timestamptz"), ("span", "bigint"), ("n", "bigint")):
        sql = sql.replace(f":{name} ", f"CAST(:{name} AS {sql_type}) ")
        sql = sql.replace(f":{name})", f"CAST(:{name} AS {sql_type}))")
    return sql


async def seed(engine: AsyncEngine, requests: int, services: int) -> int:
    span = DAYS * 86400
    async with engine.begin() as connection:
        for sql, n in ((SEED_REQUESTS, requests), (SEED_ANSWERS, requests)):
            await connection.execute(text(_typed(sql)), {"base": BASE, "span": span, "n": n})
        await connection.execute(
            text(_typed(SEED_SERVICES)), {"base": BASE, "span": span, "n": services}
        )
    async with engine.connect() as connection:
        await connection.execute(text("COMMIT"))
        await connection.execute(text("ANALYZE messages"))
        await connection.execute(text("ANALYZE service_requests"))
        rows = await connection.execute(text("SELECT count(*) FROM messages"))
        return int(rows.scalar_one())


async def timed(
    db: EngineKpiDatabase, sql: str, params: dict[str, object], repeat: int
) -> list[float]:
    times = []
    for _ in range(repeat):
        start = time.perf_counter()
        await db.fetch(sql, params)  # type: ignore[arg-type]
        times.append(time.perf_counter() - start)
    return times


async def measure(db: EngineKpiDatabase, repeat: int) -> dict[tuple[str, str], list[float]]:
    end = BASE + timedelta(days=DAYS)
    now = end + timedelta(minutes=1)
    windows = {
        "30 days": (BASE, end),
        "1 day": (end - timedelta(days=1), end),
        "1 hour": (end - timedelta(hours=1), end),
    }
    results: dict[tuple[str, str], list[float]] = {}
    for name, (start, stop) in windows.items():
        params: dict[str, object] = {
            "start": start,
            "end": stop,
            "overdue_before": now - DEFAULT_ANSWER_TIMEOUT,
        }
        results[(name, "agencies")] = await timed(
            db, agency_sql("postgresql", by_agency=False), params, repeat
        )
        results[(name, "services")] = await timed(
            db, service_sql("postgresql"), {"start": start, "end": stop}, repeat
        )
    # The ops console's overview: the last hour per minute (gateway.ops.traffic).
    hour = {"start": end - timedelta(hours=1), "end": end}
    results[("1 hour", "traffic")] = await timed(db, traffic_sql("postgresql", 60), hour, repeat)
    return results


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--url", default="postgresql://postgres@127.0.0.1:5432/test")
    parser.add_argument("--requests", type=int, default=515_464)
    parser.add_argument("--services", type=int, default=100_000)
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument("--keep", action="store_true", help="keep the schema (to EXPLAIN)")
    args = parser.parse_args()

    schema = f"kpi_bench_{uuid.uuid4().hex[:8]}"
    admin = create_engine(args.url)
    async with admin.begin() as connection:
        await connection.execute(text(f'CREATE SCHEMA "{schema}"'))
    engine = create_engine(args.url, schema=schema)
    try:
        await upgrade(engine)
        start = time.perf_counter()
        rows = await seed(engine, args.requests, args.services)
        print(
            f"seeded {rows:,} messages rows ({args.requests:,} requests) and "
            f"{args.services:,} service requests in {time.perf_counter() - start:.1f} s "
            f"(schema {schema})"
        )
        db = EngineKpiDatabase(engine)
        with_indexes = await measure(db, args.repeat)
        async with engine.begin() as connection:
            for name in INDEXES:
                await connection.execute(text(f"DROP INDEX {name}"))
        without = await measure(db, args.repeat)

        print(
            f"\n{'window':<9} {'query':<9} {'indexed best':>13} {'median':>8}"
            f"   {'no 0006 idx best':>16} {'median':>8}   ratio (median)"
        )
        for key, times in with_indexes.items():
            base = without[key]
            print(
                f"{key[0]:<9} {key[1]:<9} {min(times) * 1000:>10.1f} ms "
                f"{statistics.median(times) * 1000:>5.0f} ms   "
                f"{min(base) * 1000:>13.1f} ms {statistics.median(base) * 1000:>5.0f} ms   "
                f"{statistics.median(base) / statistics.median(times):>6.2f}x"
            )
    finally:
        await engine.dispose()
        if not args.keep:
            async with admin.begin() as connection:
                await connection.execute(text(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE'))
        await admin.dispose()


if __name__ == "__main__":
    asyncio.run(main())
