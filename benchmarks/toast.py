"""What the journal's message bodies cost PostgreSQL, by how the ``xml`` column is stored.

The whole bus in this process (memory transport, the dev PKI of the router tests), one
fresh PostgreSQL database per way of storing a body: compressed by pglz (PostgreSQL's
default, as the migrations leave it) or lz4, or uncompressed (``STORAGE EXTERNAL``). SOAP-pull round
trips (SendRequest, GetRequest, SendResponse, Ack, GetResponse, Ack) go to the three
buses in turn, ``--batch`` at a time, ``--rounds`` times, so the host's drift hits them
alike. Printed per way: the CPU all PostgreSQL processes used per round trip (run
nothing else on the server meanwhile), its ratio to pglz's, the WAL written per round
trip, and the bodies' raw and stored size.

Run: .venv/bin/python benchmarks/toast.py [--rounds 6] [--batch 100]
"""

from __future__ import annotations

import argparse
import asyncio
import sys
from contextlib import ExitStack
from pathlib import Path

import asyncpg

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from benchmarks.chain import SHARED  # noqa: E402
from benchmarks.harness import cpu_by_role, database_url  # noqa: E402
from gateway.store import open_stores  # noqa: E402
from gateway.testing.bus import Bus, birth_request, birth_response, open_bus  # noqa: E402
from gateway.testing.processes import fresh_database  # noqa: E402

#: How each database stores ``messages.xml``: the change made to the migrated table.
WAYS: dict[str, str | None] = {
    "pglz (the default)": None,
    "lz4": "ALTER COLUMN xml SET COMPRESSION lz4",
    "uncompressed": "ALTER COLUMN xml SET STORAGE EXTERNAL",
}
POSTGRES = {"PostgreSQL": SHARED["PostgreSQL"]}
#: The server's WAL position in bytes (a difference: the WAL written meanwhile).
WAL = "SELECT pg_wal_lsn_diff(pg_current_wal_lsn(), '0/0')::bigint"


def postgres_cpu_s() -> float:
    return cpu_by_role({}, POSTGRES).get("PostgreSQL", 0.0)


async def round_trips(bus: Bus, n: int) -> None:
    for _ in range(n):
        sent = await bus.portal.send_request(birth_request())
        delivery = await bus.zags.get_request()
        assert delivery is not None
        await bus.zags.send_response(delivery.reply_to, content=birth_response())
        await bus.zags.ack(delivery.metadata.message_id)
        got = await bus.portal.get_response()
        assert got is not None
        assert got.original_message_id == sent.message_id
        await bus.portal.ack(got.metadata.message_id)


async def run(databases: dict[str, str], rounds: int, batch: int) -> None:
    buses: dict[str, Bus] = {}
    for way, database in databases.items():
        buses[way] = await open_bus(journal=open_stores(database).journal)  # migrated
        change = WAYS[way]
        if change is not None:
            connection = await asyncpg.connect(database)
            await connection.execute(f"ALTER TABLE messages {change}")
            await connection.close()
        await round_trips(buses[way], 20)  # warm-up: every statement prepared
    used = dict.fromkeys(databases, 0.0)
    wal = dict.fromkeys(databases, 0)
    server = await asyncpg.connect(database_url())
    for _ in range(rounds):
        for way, bus in buses.items():
            before, lsn = postgres_cpu_s(), await server.fetchval(WAL)
            await round_trips(bus, batch)
            used[way] += postgres_cpu_s() - before
            wal[way] += await server.fetchval(WAL) - lsn
    await server.close()
    for bus in buses.values():
        await bus.close()
    n = rounds * batch
    base = used["pglz (the default)"] / n
    print(f"{n} SOAP-pull round trips each; PostgreSQL CPU per round trip, bodies stored")
    for way, database in databases.items():
        connection = await asyncpg.connect(database)
        raw, stored = await connection.fetchrow(
            "SELECT avg(octet_length(xml))::int, avg(pg_column_size(xml))::int FROM messages"
        )
        await connection.close()
        per = used[way] / n
        print(
            f"  {way:<22} {1000 * per:6.2f} ms  ({per / base:.3f} of pglz's)  "
            f"WAL {wal[way] / n / 1024:5.1f} KiB; body {raw} bytes, stored {stored}"
        )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=6)
    parser.add_argument("--batch", type=int, default=100)
    args = parser.parse_args()
    with ExitStack() as stack:
        databases = {way: stack.enter_context(fresh_database(database_url())) for way in WAYS}
        asyncio.run(run(databases, args.rounds, args.batch))


if __name__ == "__main__":
    main()
