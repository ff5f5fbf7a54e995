"""What one SOAP-pull round trip costs the journal, operation by operation.

The whole bus in this process (memory transport, the dev PKI of the router tests) on
a fresh PostgreSQL database: ``--round-trips`` round trips one at a time
(SendRequest, GetRequest, SendResponse, Ack, GetResponse, Ack), no races, no empty
polls, no background loops. Prints, per operation and per round trip, the statements
the journal sent (counted by asyncpg; BEGIN and COMMIT left out) and the transactions
PostgreSQL counted (``pg_stat_database``, read once the pool is closed and its
backends have reported).

Run: .venv/bin/python benchmarks/journal.py [--round-trips 50]
"""

from __future__ import annotations

import argparse
import asyncio
import sys
from collections import Counter
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from benchmarks.dbstats import STATS_DELAY_S, transactions  # noqa: E402
from gateway.store import open_stores  # noqa: E402
from gateway.testing.bus import birth_request, birth_response, open_bus  # noqa: E402
from gateway.testing.processes import fresh_database  # noqa: E402

OPERATIONS = ("SendRequest", "GetRequest", "SendResponse", "Ack (provider)", "GetResponse", "Ack")


async def run(database: str, round_trips: int) -> tuple[Counter[str], int, int]:
    statements: list[str] = []
    stores = open_stores(database)
    stores.database.trace = statements.append
    bus = await open_bus(journal=stores.journal)
    per_operation: Counter[str] = Counter()
    await asyncio.sleep(0)  # the migration's and start's own statements, then count
    statements.clear()
    before = await transactions(database)
    for _ in range(round_trips):
        steps = iter(OPERATIONS)

        def mark(step: str) -> None:
            control = ("BEGIN", "COMMIT", "ROLLBACK")
            per_operation[step] += sum(
                sql.split()[0].strip(";").upper() not in control for sql in statements
            )
            statements.clear()

        sent = await bus.portal.send_request(birth_request())
        await asyncio.sleep(0)  # let the statement logger's callbacks run
        mark(next(steps))
        delivery = await bus.zags.get_request()
        assert delivery is not None
        await asyncio.sleep(0)
        mark(next(steps))
        await bus.zags.send_response(delivery.reply_to, content=birth_response())
        await asyncio.sleep(0)
        mark(next(steps))
        await bus.zags.ack(delivery.metadata.message_id)
        await asyncio.sleep(0)
        mark(next(steps))
        got = await bus.portal.get_response()
        assert got is not None
        assert got.original_message_id == sent.message_id
        await asyncio.sleep(0)
        mark(next(steps))
        await bus.portal.ack(got.metadata.message_id)
        await asyncio.sleep(0)
        mark(next(steps))
    await bus.close()  # closes the pool: its backends report their counts as they exit
    await asyncio.sleep(STATS_DELAY_S)
    after = await transactions(database)
    return per_operation, before, after


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--round-trips", type=int, default=50)
    args = parser.parse_args()
    n = args.round_trips
    with fresh_database() as database:
        per_operation, before, after = asyncio.run(run(database, n))
    print(f"{n} SOAP-pull round trips, one at a time, journal on PostgreSQL")
    for step in OPERATIONS:
        print(f"  {step:<16}{per_operation[step] / n:6.2f} statements")
    total = sum(per_operation.values()) / n
    print(f"statements per round trip (asyncpg): {total:.2f}")
    print(
        f"transactions per round trip (pg_stat_database): {(after - before) / n:.2f} (target <= 8)"
    )


if __name__ == "__main__":
    main()
