"""The floor: the CPU one round trip's necessary work costs, beside the raw signed pipeline.

Issue 12 bounds the gateway's CPU per round trip by a multiple of ``router.py``'s raw
signed pipeline (pull 3.5x, push 2.5x). This composes what the gateway cannot avoid
doing in one round trip from micro-benchmarks of the same primitives, measured in the
same run as that pipeline (once before them, once after), so that the distance from
the floor to the target says how much room the target leaves for everything else.

1. What one round trip makes the gateway do is counted, not assumed
   (``floor_census.py``): the whole bus in this process, its journal on PostgreSQL,
   round trips made as ``router.py`` makes them; inside ``Router.handle`` every call of
   the XML and crypto primitives is recorded with its arguments, every publish, get and
   ack, and every SQL statement with its arguments.
2. XML and crypto: each recorded call of one round trip (the last of each mode) made
   again ``--iterations`` times on the very same tree: the secure parse of the request
   (``parse_secure``), the bus schema and the content schema (``CompiledSchema.validate``),
   the caller's signature (``verify_element`` with the bus's verifier), the bus's own
   signature on replies that carry one (``sign_element``), the reply's serialization
   (``wrap_envelope``). What else the gateway parses, canonicalizes and hashes (the
   stored message re-read for a pull, the content digest, the replay guard's digest) is
   measured the same way and shown apart, not in the floor.
3. I/O (``floor_io.py``): raw aio-pika per confirmed publish and per get + ack, raw
   asyncpg sending the journal's statements of the census again, a bare ASGI app on
   uvicorn + httptools + uvloop per POST; each times the counts per round trip. Beside
   it, what the journal's own layer adds: CPU per statement of accepts and QUEUED moves
   through ``PgJournal`` and of the same statements on raw asyncpg.

CPU of this process (``time.process_time``), of the bare server's process for HTTP
(psutil). RabbitMQ and PostgreSQL are ``SMEVBUS_AMQP_URL`` and ``SMEVBUS_DATABASE_URL``
(fresh vhosts and databases). Figures and JSON keys: ``benchmarks/README.md``.

Run: .venv/bin/python benchmarks/floor.py [--raw-messages 2000] [--round-trips 200]
[--iterations 300] [--amqp-messages 3000] [--http-requests 4000] [--json PATH]
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import sys
import tempfile
import time
from collections import defaultdict
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from benchmarks.floor_census import (  # noqa: E402
    FLOOR_PRIMITIVES,
    OTHER_PRIMITIVES,
    Primitive,
    RoundTrip,
    census,
    is_control,
    store_overhead,
)
from benchmarks.floor_io import amqp_floor, http_floor, replay  # noqa: E402
from benchmarks.harness import (  # noqa: E402
    TARGETS,
    add_output_options,
    amqp_url,
    database_url,
    finish,
)
from benchmarks.router import raw_pipeline  # noqa: E402
from gateway.core.clock import SystemClock  # noqa: E402
from gateway.crypto.devpki import init_dev_pki  # noqa: E402
from gateway.crypto.keystore import load_signer, load_verifier  # noqa: E402
from gateway.testing.processes import fresh_database  # noqa: E402

MODES = ("pull", "push")
LIMITS = {
    mode: next(t.limit for t in TARGETS if t.key.endswith(f"raw_signed.{mode}")) for mode in MODES
}
DESCRIPTIONS = {
    "parse_secure": "secure parse of the request",
    "xsd_bus": "XSD: bus schema",
    "xsd_content": "XSD: content schema",
    "verify": "caller's signature verified",
    "sign": "bus signature on the reply",
    "serialize": "reply serialized (wrap_envelope)",
    "amqp_publish": "AMQP confirmed publish",
    "amqp_get_ack": "AMQP basic.get + ack",
    "sql": "SQL statement (raw asyncpg)",
    "http_post": "HTTP POST served (bare ASGI)",
    "parse_own": "stored message re-parsed",
    "content_digest": "content digest (exc-c14n + SHA-256)",
    "replay_digest": "replay guard digest (SignedInfo c14n)",
}


def cpu_us(primitive: Primitive, iterations: int) -> float:
    """µs of CPU per call of ``primitive``, made again ``iterations`` times."""
    primitive()
    began = time.process_time()
    for _ in range(iterations):
        primitive()
    return (time.process_time() - began) * 1e6 / iterations


def per_round_trip(trips: list[RoundTrip], what: str, count: Any) -> float:
    """The mean of ``count(trip)`` over ``trips``; says so when it is not the same in all."""
    values = [count(trip) for trip in trips]
    if min(values) != max(values):
        spread = ", ".join(f"{v} in {values.count(v)}" for v in sorted(set(values)))
        print(f"  {trips[0].mode}: {what} varies between round trips: {spread}")
    return statistics.fmean(values)


def xml_costs(trip: RoundTrip, iterations: int) -> tuple[dict[str, float], dict[str, float]]:
    """ms per round trip by primitive, and by operation (floor primitives only)."""
    by_name: dict[str, float] = defaultdict(float)
    by_operation: dict[str, float] = defaultdict(float)
    for call in trip.calls:
        for primitive in call.primitives:
            ms = cpu_us(primitive, iterations) / 1000
            by_name[primitive.name] += ms
            if primitive.name in FLOOR_PRIMITIVES:
                by_operation[call.operation] += ms
    return dict(by_name), dict(by_operation)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--raw-messages", type=int, default=2000)
    parser.add_argument("--concurrency", type=int, default=16)
    parser.add_argument(
        "--round-trips", type=int, default=200, help="in-process round trips of each mode"
    )
    parser.add_argument(
        "--iterations", type=int, default=300, help="repetitions of each recorded XML call"
    )
    parser.add_argument("--amqp-messages", type=int, default=3000)
    parser.add_argument("--http-requests", type=int, default=4000)
    add_output_options(parser)
    args = parser.parse_args()
    conc, amqp, n = args.concurrency, amqp_url(), args.round_trips

    keys = Path(tempfile.mkdtemp(prefix="smevbus-floor-keys-"))
    init_dev_pki(keys, {m: m for m in ("PORTAL", "ZAGS", "SMEVBUS")}, clock=SystemClock())
    crypto = (
        load_signer(keys, "PORTAL"),
        load_signer(keys, "ZAGS"),
        load_verifier(keys, SystemClock()),
    )
    began = time.perf_counter()
    before = asyncio.run(raw_pipeline(amqp, args.raw_messages, conc, crypto))

    with fresh_database(database_url()) as database:
        counted = asyncio.run(census(database, n))
    trips = {"pull": counted.pull, "push": counted.push}
    with fresh_database(database_url()) as database:
        store_us, raw_us = asyncio.run(store_overhead(database, 10 * n))
    sql_ms: dict[str, float] = {}
    with fresh_database(database_url()) as database:
        for mode in MODES:
            cpu, failed = asyncio.run(replay(database, [trip.statements for trip in trips[mode]]))
            sql_ms[mode] = cpu * 1000 / n
            if failed:
                print(f"{mode}: {failed} statements failed when sent again")

    xml = {mode: xml_costs(trips[mode][-1], args.iterations) for mode in MODES}
    published = [message for call in counted.pull[-1].calls for message in call.published]
    publish_ms, get_ms = amqp_floor(amqp, published, args.amqp_messages, conc)
    last_pull = counted.pull[-1].calls
    reply_bytes = round(statistics.fmean(len(call.reply) for call in last_pull))
    post_ms = http_floor(
        [call.request for call in last_pull], reply_bytes, args.http_requests, conc
    )
    after = asyncio.run(raw_pipeline(amqp, args.raw_messages, conc, crypto))
    elapsed = time.perf_counter() - began

    # --- counts per round trip, as the census found them -------------------------------
    print(f"per round trip, counted inside Router.handle over {n} round trips of each mode:")
    counts: dict[str, dict[str, float]] = defaultdict(dict)
    for mode in MODES:
        print(f"  {mode}: SOAP calls {' -> '.join(c.operation for c in trips[mode][-1].calls)}")
        for name in FLOOR_PRIMITIVES + OTHER_PRIMITIVES:
            counts[name][mode] = per_round_trip(
                trips[mode], name, lambda t, name=name: t.count(name)
            )
        for name, event in (("amqp_publish", "publish"), ("amqp_get_ack", "get")):
            counts[name][mode] = per_round_trip(
                trips[mode], event, lambda t, event=event: t.transport(event)
            )
        acks = per_round_trip(trips[mode], "ack", lambda t: t.transport("ack"))
        if acks != counts["amqp_get_ack"][mode]:
            print(f"  {mode}: {acks} acks for {counts['amqp_get_ack'][mode]} gets")
        counts["sql"][mode] = per_round_trip(trips[mode], "SQL", lambda t: t.sql_statements)
        counts["http_post"][mode] = len(trips[mode][-1].calls)
        shown = ", ".join(f"{k} {v[mode]:g}" for k, v in counts.items())
        print(f"  {mode}: {shown}")
        sql = ", ".join(
            f"{c.operation} {sum(not is_control(q) for q, _ in c.statements)}"
            f"+{sum(is_control(q) for q, _ in c.statements)}"
            for c in trips[mode][-1].calls
        )
        print(f"  {mode}: SQL statements + transaction control per call: {sql}")
        ops = xml[mode][1]
        print(
            f"  {mode}: floor XML + crypto per call, ms: "
            + ", ".join(f"{op} {ms:.3f}" for op, ms in ops.items())
        )
    if counted.stray_statements:
        print(f"  ({counted.stray_statements} statements outside any SOAP call: not counted)")

    # --- ms per round trip by component -------------------------------------------------
    ms: dict[str, dict[str, float]] = defaultdict(dict)
    for mode in MODES:
        for name in FLOOR_PRIMITIVES + OTHER_PRIMITIVES:
            ms[name][mode] = xml[mode][0].get(name, 0.0)
        ms["amqp_publish"][mode] = counts["amqp_publish"][mode] * publish_ms
        ms["amqp_get_ack"][mode] = counts["amqp_get_ack"][mode] * get_ms
        ms["sql"][mode] = sql_ms[mode]
        ms["http_post"][mode] = counts["http_post"][mode] * post_ms

    def us_per_op(name: str) -> float:
        mode = "pull" if counts[name]["pull"] else "push"
        return ms[name][mode] * 1000 / counts[name][mode] if counts[name][mode] else 0.0

    floor_names = [*FLOOR_PRIMITIVES, "amqp_publish", "amqp_get_ack", "sql", "http_post"]
    floor = {mode: sum(ms[name][mode] for name in floor_names) for mode in MODES}
    raw_bracket = [before.per_call_ms(before.cpu_s), after.per_call_ms(after.cpu_s)]
    raw = statistics.fmean(raw_bracket)

    header = f"{'component':<42}{'pull':>6}{'push':>6}{'µs/op':>9}{'pull ms':>10}{'push ms':>10}"
    print(header)
    print("-" * len(header))

    def line(name: str) -> None:
        print(
            f"{DESCRIPTIONS[name]:<42}{counts[name]['pull']:>6g}{counts[name]['push']:>6g}"
            f"{us_per_op(name):>9.1f}{ms[name]['pull']:>10.3f}{ms[name]['push']:>10.3f}"
        )

    for name in floor_names:
        line(name)
    print("-" * len(header))
    print(f"{'floor':<63}{floor['pull']:>10.3f}{floor['push']:>10.3f}")
    print("not in the floor (the gateway does them too):")
    for name in OTHER_PRIMITIVES:
        line(name)
    print(
        f"journal: CPU per statement through PgJournal (accept, QUEUED move) {store_us:.1f} us, "
        f"the same statements on raw asyncpg {raw_us:.1f} us ({store_us / raw_us:.2f}x)"
    )
    print(
        f"raw signed pipeline CPU per round trip: {raw:.3f} ms "
        f"({raw_bracket[0]:.3f} before, {raw_bracket[1]:.3f} after)"
    )
    target = {mode: LIMITS[mode] * raw for mode in MODES}
    for mode in MODES:
        print(
            f"{mode}: floor / raw signed = {floor[mode] / raw:.2f}x; target {LIMITS[mode]:g}x raw "
            f"= {target[mode]:.2f} ms; floor = {floor[mode]:.2f} ms; allowance for everything "
            f"else = {target[mode] - floor[mode]:.2f} ms"
        )
    print(f"({elapsed:.0f} s)")

    def component(name: str) -> dict[str, float]:
        return {
            "count_pull": counts[name]["pull"],
            "count_push": counts[name]["push"],
            "us_per_op": us_per_op(name),
            "ms_pull": ms[name]["pull"],
            "ms_push": ms[name]["push"],
        }

    figures: dict[str, Any] = {
        "benchmark": "floor",
        "concurrency": conc,
        "round_trips": n,
        "iterations": args.iterations,
        "floor_ms": floor,
        "raw_signed_cpu_ms_per_round_trip": raw,
        "raw_signed_cpu_ms_before_after": raw_bracket,
        "floor_ratio_to_raw_signed": {mode: floor[mode] / raw for mode in MODES},
        "target_ms": target,
        "allowance_ms": {mode: target[mode] - floor[mode] for mode in MODES},
        "components": {name: component(name) for name in floor_names},
        "not_in_floor": {name: component(name) for name in OTHER_PRIMITIVES},
        "journal_us_per_statement": {"store": store_us, "raw_asyncpg": raw_us},
        "xml_crypto_ms_by_call": {mode: xml[mode][1] for mode in MODES},
    }
    finish(args, figures)


if __name__ == "__main__":
    main()
