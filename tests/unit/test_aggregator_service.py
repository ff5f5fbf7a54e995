"""The aggregator over a whole in-process bus: memory transport, SQLite, a FakeClock.

Agencies are tiny in-test providers on the ZAGS / MVD_MIGR / FNS clients: GetRequest,
SendResponse of a shipped sample answer (or a rejection), Ack. Nothing sleeps; time
moves only by advancing the bus's FakeClock.
"""

from __future__ import annotations

import asyncio
import copy
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest

from gateway.aggregator import Aggregator, ApplicantDataInvalid, load_catalogue
from gateway.aggregator.service import SEND_FAILED
from gateway.client.participant import ParticipantClient
from gateway.core.aggregation import PartStatus, ServiceRequestState
from gateway.core.catalogue import Catalogue
from gateway.core.errors import NotFound, SchemaViolation
from gateway.core.lifecycle import MessageState
from gateway.core.service_lifecycle import CompletedBy, ServiceState
from gateway.store import ServiceRequests
from gateway.store.requests_sqlite import SqliteServiceRequests
from gateway.store.service_requests import (
    LinkedRequest,
    ServiceRequestRecord,
)
from gateway.testing.bus import Bus, content, open_bus, pump
from gateway.transport.base import Direction
from gateway.xml import messages as m

ROOT = Path(__file__).resolve().parents[2]
CATALOGUE: Catalogue = load_catalogue((ROOT / "config" / "services.toml").read_text("utf-8"))
SERVICE = "child-birth-benefit"
APPLICANT: dict[str, Any] = copy.deepcopy(CATALOGUE.get(SERVICE).example)
PORTAL = "PORTAL"
#: Which provider answers which part, and its sample answer.
AGENCIES = {
    "birth-record": ("ZAGS", "zags-birth-record.response"),
    "parent-registration": ("MVD_MIGR", "mvd-residence-registration.response"),
    "parent-inn": ("FNS", "fns-inn.response"),
}


@dataclass
class World:
    bus: Bus
    store: ServiceRequests
    agg: Aggregator

    def aggregator(
        self, store: ServiceRequests | None = None, portal: ParticipantClient | None = None
    ) -> Aggregator:
        """Another aggregator process on the same bus and (by default) the same store,
        sending through ``portal`` if given."""
        return Aggregator(
            catalogue=CATALOGUE,
            registry=self.bus.registry,
            store=store or self.store,
            clients=self.bus.client if portal is None else lambda _: portal,
            clock=self.bus.clock,
        )

    def portal_as(self, client: type[ParticipantClient]) -> ParticipantClient:
        """The portal's client, as an instance of ``client`` (a subclass that meddles)."""
        real = self.bus.client(PORTAL)
        return client(
            signer=real.signer, verifier=real.verifier, clock=real.clock, call=self.bus.handle
        )

    async def answer(self, part: str) -> None:
        """The agency of ``part`` answers its one pending request with its sample."""
        agency, sample = AGENCIES[part]
        await self._reply(
            agency, lambda client, to: client.send_response(to, content=content(sample))
        )

    async def reject(self, part: str, code: str = "NO_DATA") -> None:
        agency, _ = AGENCIES[part]
        rejection = m.Rejection(code, "no such record")
        await self._reply(
            agency, lambda client, to: client.send_response(to, rejections=[rejection])
        )

    async def _reply(
        self, agency: str, send: Callable[[ParticipantClient, str], Awaitable[Any]]
    ) -> None:
        client = self.bus.client(agency)
        delivery = await client.get_request()
        assert delivery is not None, f"{agency} has no request"
        await send(client, delivery.reply_to)
        await client.ack(delivery.metadata.message_id)

    async def answer_all(self) -> None:
        for part in AGENCIES:
            await self.answer(part)

    async def answer_together(self) -> None:
        """Every agency answers at once, as agencies of their own do (an answer the bus
        holds, :mod:`gateway.router.holds`, keeps none of the others waiting)."""
        await asyncio.gather(*(self.answer(part) for part in AGENCIES))

    def advance(self, delta: timedelta) -> None:
        self.bus.clock.advance(delta)


@pytest.fixture
async def world() -> AsyncIterator[World]:
    bus = await open_bus()
    # On the journal's database: a reply is journaled and saved in one write.
    store = bus.journal.service_requests()
    agg = Aggregator(
        catalogue=CATALOGUE,
        registry=bus.registry,
        store=store,
        clients=bus.client,
        clock=bus.clock,
    )
    try:
        yield World(bus, store, agg)
    finally:
        await bus.close()


async def submit(w: World, agg: Aggregator | None = None, **kw: Any) -> ServiceRequestRecord:
    record, created = await (agg or w.agg).submit(
        service=SERVICE, applicant=APPLICANT, participant=PORTAL, **kw
    )
    assert created
    return record


def parts(state: ServiceRequestState) -> dict[str, PartStatus]:
    return {p.id: p.status for p in state.parts}


# --- submit ---------------------------------------------------------------------------


async def test_submit_sends_one_signed_request_per_part(world: World) -> None:
    record = await submit(world)
    assert record.status is ServiceState.PENDING
    assert all(p.message_id is not None and p.sent_at is not None for p in record.state.parts)
    for agency, _ in AGENCIES.values():
        assert await world.bus.depth(Direction.REQUESTS, agency) == 1
    # Every part's MessageID correlates back to its part.
    for p in record.state.parts:
        assert p.message_id is not None
        linked = await world.store.by_message(p.message_id)
        assert linked is not None
        assert (linked.link.service_request_id, linked.link.part_id) == (record.id, p.id)
        assert linked.record == record


async def test_bad_input_is_refused_before_anything_is_sent(world: World) -> None:
    with pytest.raises(NotFound):
        await world.agg.submit(service="no-such-service", applicant=APPLICANT, participant=PORTAL)
    bad = copy.deepcopy(APPLICANT)
    del bad["parent"]["passport"]  # needed by the 2nd and 3rd parts, not the 1st
    with pytest.raises(ApplicantDataInvalid) as err:
        await world.agg.submit(service=SERVICE, applicant=bad, participant=PORTAL)
    assert err.value.detail["field"] == "parent.passport.series"
    with pytest.raises(SchemaViolation):
        await world.agg.submit(
            service=SERVICE, applicant=APPLICANT, participant=PORTAL, deadline_s=0
        )
    assert all(v == 0 for v in (await world.bus.depths()).values())
    assert (await world.agg.find()).items == ()


async def test_idempotency_key_returns_the_same_request_and_sends_nothing_twice(
    world: World,
) -> None:
    first, created = await world.agg.submit(
        service=SERVICE, applicant=APPLICANT, participant=PORTAL, idempotency_key="k-1"
    )
    again, created_again = await world.agg.submit(
        service=SERVICE, applicant=APPLICANT, participant=PORTAL, idempotency_key="k-1"
    )
    assert created
    assert not created_again
    assert again.id == first.id
    for agency, _ in AGENCIES.values():
        assert await world.bus.depth(Direction.REQUESTS, agency) == 1
    assert len((await world.agg.find(participant=PORTAL)).items) == 1


# --- outcomes -------------------------------------------------------------------------


async def test_all_three_parts_answer_completed(world: World) -> None:
    record = await submit(world)
    await world.answer_all()
    assert not world.agg.finalized.is_set()
    assert await pump(world.bus, world.agg) == 3
    assert world.agg.finalized.is_set()  # wakes the callback dispatcher
    done = await world.agg.get(str(record.id))
    assert done.status is ServiceState.COMPLETED
    assert done.completed_by is CompletedBy.ALL_ANSWERED
    assert done.next_deadline is None
    assert set(parts(done.state).values()) == {PartStatus.ANSWERED}
    result = done.state.result
    assert result is not None
    for name in ("birth_act_number", "birth_act_date", "parent_registrations", "parent_inn"):
        assert result[name] is not None, name
    assert result["birth_not_found"] is None
    assert await world.bus.depth(Direction.RESPONSES, PORTAL) == 0
    page = await world.agg.find(status=ServiceState.COMPLETED, service=SERVICE)
    assert [r.id for r in page.items] == [record.id]


async def test_optional_part_silent_until_deadline_is_partial(world: World) -> None:
    record = await submit(world)
    await world.answer("birth-record")
    await world.answer("parent-registration")
    assert await pump(world.bus, world.agg) == 2
    assert (await world.agg.get(str(record.id))).status is ServiceState.PENDING
    assert await world.agg.fire_deadlines() == 0  # nothing due yet
    world.advance(timedelta(minutes=2))  # the FNS part's deadline
    assert await world.agg.fire_deadlines() == 1
    done = await world.agg.get(str(record.id))
    assert done.status is ServiceState.PARTIAL
    assert done.completed_by is CompletedBy.DEADLINE
    assert parts(done.state)["parent-inn"] is PartStatus.TIMED_OUT
    assert done.state.result is not None
    assert done.state.result["parent_inn"] is None
    assert done.state.result["birth_act_number"] is not None


async def test_required_part_rejected_fails_fast_naming_it(world: World) -> None:
    record = await submit(world)
    await world.reject("birth-record")
    assert await pump(world.bus, world.agg) == 1
    done = await world.agg.get(str(record.id))
    assert done.status is ServiceState.FAILED
    assert done.completed_by is CompletedBy.REQUIRED_REJECTED
    assert done.state.failed_part == "birth-record"
    rejection = done.state.part("birth-record").rejection
    assert rejection is not None
    assert rejection.code == "NO_DATA"


async def test_required_part_timing_out_is_timed_out(world: World) -> None:
    record = await submit(world)
    await world.answer("birth-record")
    await world.answer("parent-inn")
    assert await pump(world.bus, world.agg) == 2
    world.advance(timedelta(minutes=5))  # MVD never answered within its deadline
    assert await world.agg.fire_deadlines() == 1
    done = await world.agg.get(str(record.id))
    assert done.status is ServiceState.TIMED_OUT
    assert done.completed_by is CompletedBy.DEADLINE
    assert parts(done.state)["parent-registration"] is PartStatus.TIMED_OUT
    assert parts(done.state)["birth-record"] is PartStatus.ANSWERED


async def test_service_deadline_override_times_everything_out(world: World) -> None:
    record = await submit(world, deadline_s=30)
    assert record.next_deadline == record.created_at + timedelta(seconds=30)
    world.advance(timedelta(seconds=30))
    assert await world.agg.fire_deadlines() == 1
    assert (await world.agg.get(str(record.id))).status is ServiceState.TIMED_OUT


async def test_cancel_then_replies_are_late(world: World) -> None:
    record = await submit(world)
    with pytest.raises(NotFound):
        await world.agg.cancel(str(record.id), "SOMEONE_ELSE")
    with pytest.raises(NotFound):
        await world.agg.cancel(str(uuid.uuid4()), PORTAL)
    cancelled = await world.agg.cancel(str(record.id), PORTAL)
    assert cancelled.status is ServiceState.CANCELLED
    assert cancelled.completed_by is CompletedBy.CANCELLED
    # Cancelling again returns the final record unchanged.
    assert (await world.agg.cancel(str(record.id), PORTAL)).version == cancelled.version
    await world.answer_all()
    assert await pump(world.bus, world.agg) == 0
    assert (await world.agg.get(str(record.id))).version == cancelled.version


async def test_late_reply_after_final_does_not_change_the_result(world: World) -> None:
    record = await submit(world)
    await world.answer("birth-record")
    await world.answer("parent-registration")
    await pump(world.bus, world.agg)
    world.advance(timedelta(minutes=2))
    await world.agg.fire_deadlines()
    final = await world.agg.get(str(record.id))
    assert final.status is ServiceState.PARTIAL
    await world.answer("parent-inn")  # FNS finally answers
    assert await pump(world.bus, world.agg) == 0
    after = await world.agg.get(str(record.id))
    assert after.state == final.state
    assert after.version == final.version
    assert await world.bus.depth(Direction.RESPONSES, PORTAL) == 0  # acked all the same


async def test_send_failure_rejects_the_part(world: World) -> None:
    calls = 0
    real = world.bus.client(PORTAL)

    class Flaky(ParticipantClient):
        def prepare_request(self, *args: Any, **kw: Any) -> Any:
            send = real.prepare_request(*args, **kw)

            async def flaky_send() -> Any:
                nonlocal calls
                calls += 1
                if calls == 2:
                    raise ConnectionError("asyncpg: relation messages does not exist")
                return await send()

            return flaky_send

    record = await submit(world, world.aggregator(portal=world.portal_as(Flaky)))
    assert record.status is ServiceState.FAILED
    assert record.state.failed_part == "parent-registration"
    rejection = record.state.part("parent-registration").rejection
    assert rejection is not None
    assert rejection.code == SEND_FAILED
    # the portal sees it; the bus's own failure is named, never its internals
    assert rejection.description == (
        "SendRequest failed (internal): the bus failed to process the message; retry later"
    )


# --- several processes, restarts --------------------------------------------------------


async def test_two_aggregators_applying_concurrently_stay_consistent(world: World) -> None:
    other = world.aggregator()
    records = [await submit(world) for _ in range(3)]
    for _ in records:
        await world.answer_all()
    counts = await asyncio.gather(pump(world.bus, world.agg), pump(world.bus, other))
    assert sum(counts) == 9
    for r in records:
        done = await world.agg.get(str(r.id))
        assert done.status is ServiceState.COMPLETED
        assert set(parts(done.state).values()) == {PartStatus.ANSWERED}  # none lost
        # Created, then one to three saves: replies waiting for their turn are saved
        # together (gateway.aggregator.reply_turns).
        assert 2 <= done.version <= 4


async def test_one_pump_applies_replies_side_by_side_and_loses_none(world: World) -> None:
    records = [await submit(world) for _ in range(3)]
    for _ in records:
        await world.answer_all()
    second_in = asyncio.Event()
    started = 0

    class Overlapping(SqliteServiceRequests):
        async def by_message(self, message_id: str | uuid.UUID) -> LinkedRequest | None:
            nonlocal started
            started += 1
            if started == 2:
                second_in.set()
            # One reply at a time would never let a second one in: fail, don't hang.
            await asyncio.wait_for(second_in.wait(), timeout=10)
            return await super().by_message(message_id)

    agg = world.aggregator(Overlapping(world.store.database))
    assert await pump(world.bus, agg) == 9
    for r in records:
        done = await world.agg.get(str(r.id))
        assert done.status is ServiceState.COMPLETED
        assert set(parts(done.state).values()) == {PartStatus.ANSWERED}  # none lost
        assert 2 <= done.version <= 4  # as above
    assert await world.bus.depth(Direction.RESPONSES, PORTAL) == 0


async def test_a_reply_that_fails_to_apply_stops_no_other_and_stays_unacked(
    world: World,
) -> None:
    broken, *fine = [await submit(world) for _ in range(3)]
    for _ in range(3):
        await world.answer_all()

    class Failing(SqliteServiceRequests):
        async def by_message(self, message_id: str | uuid.UUID) -> LinkedRequest | None:
            linked = await super().by_message(message_id)
            if linked is not None and linked.record.id == broken.id:
                raise OSError("database connection lost")
            return linked

    agg = world.aggregator(Failing(world.store.database))
    with pytest.raises(OSError, match="connection lost"):
        await pump(world.bus, agg)

    for r in fine:
        done = await world.agg.get(str(r.id))
        assert done.status is ServiceState.COMPLETED
    assert (await world.agg.get(str(broken.id))).status is ServiceState.PENDING
    # Its three replies were neither journaled nor acked: they went back to the queue.
    assert await world.bus.journal_queued_marks() == 3
    unacked = await world.bus.journal.find(recipient=PORTAL, state=MessageState.QUEUED)
    assert len(unacked.items) == 3


async def test_conflicting_save_is_reapplied_on_the_fresh_state(world: World) -> None:
    record = await submit(world)
    other = world.aggregator()

    class RacingStore(SqliteServiceRequests):
        raced = False

        async def by_message(self, message_id: str | uuid.UUID) -> LinkedRequest | None:
            linked = await super().by_message(message_id)
            if not self.raced:
                # Another process applies its reply between our read and our write.
                self.raced = True
                await world.answer("parent-registration")
                assert await pump(world.bus, other) == 1
            return linked

    racing = RacingStore(world.store.database)
    agg = world.aggregator(racing)
    await world.answer("birth-record")
    # Our aggregator pulls only the ZAGS reply; the racer's MVD reply is sent after.
    assert await pump(world.bus, agg) == 1
    done = await world.agg.get(str(record.id))
    assert parts(done.state)["birth-record"] is PartStatus.ANSWERED
    assert parts(done.state)["parent-registration"] is PartStatus.ANSWERED
    assert done.version == 3


async def test_resume_after_restart_completes_a_pending_request(world: World) -> None:
    record = await submit(world)
    await world.answer("birth-record")
    await pump(world.bus, world.agg)
    del world.agg  # the process dies
    restarted = world.aggregator()
    assert await restarted.resume() == 1
    await world.answer("parent-registration")
    await world.answer("parent-inn")
    assert await pump(world.bus, restarted) == 2
    done = await restarted.get(str(record.id))
    assert done.status is ServiceState.COMPLETED
    assert await restarted.resume() == 0


async def test_resume_after_restart_honours_stored_deadlines(world: World) -> None:
    record = await submit(world)
    restarted = world.aggregator()
    assert await restarted.resume() == 1
    world.advance(timedelta(minutes=10))
    assert await restarted.fire_deadlines() == 1
    assert (await restarted.get(str(record.id))).status is ServiceState.TIMED_OUT


async def test_the_parts_are_prepared_while_the_request_is_stored_and_sent_after(
    world: World,
) -> None:
    real = world.bus.client(PORTAL)
    stored, all_prepared = asyncio.Event(), asyncio.Event()
    prepared: list[uuid.UUID] = []

    class Watched(ParticipantClient):
        def prepare_request(self, *args: Any, message_id: uuid.UUID, **kw: Any) -> Any:
            prepared.append(message_id)
            if len(prepared) == len(AGENCIES):
                all_prepared.set()
            return real.prepare_request(*args, message_id=message_id, **kw)

    class SlowStore:
        """The store, its ``create`` held until the test lets it go."""

        def __getattr__(self, name: str) -> Any:
            return getattr(world.store, name)

        async def create(self, *args: Any, **kw: Any) -> Any:
            await stored.wait()
            return await world.store.create(*args, **kw)

    agg = world.aggregator(SlowStore(), world.portal_as(Watched))  # type: ignore[arg-type]
    submitting = asyncio.create_task(submit(world, agg))
    async with asyncio.timeout(5):
        await all_prepared.wait()  # every part built and signed while create waits...
    assert not submitting.done()
    assert all(depth == 0 for depth in (await world.bus.depths()).values())  # ... none sent
    stored.set()
    record = await submitting
    assert sorted(prepared) == sorted(part.message_id for part in record.state.parts)
    for agency, _ in AGENCIES.values():
        assert await world.bus.depth(Direction.REQUESTS, agency) == 1


async def test_a_part_refused_while_prepared_is_rejected_and_the_rest_are_sent(
    world: World,
) -> None:
    real = world.bus.client(PORTAL)
    calls = 0

    class Refusing(ParticipantClient):
        def prepare_request(self, *args: Any, **kw: Any) -> Any:
            nonlocal calls
            calls += 1
            if calls == 2:
                raise SchemaViolation("PersonINN: '12' is not a valid value")
            return real.prepare_request(*args, **kw)

    record = await submit(world, world.aggregator(portal=world.portal_as(Refusing)))
    assert record.state.failed_part == "parent-registration"
    rejection = record.state.part("parent-registration").rejection
    assert rejection is not None
    assert rejection.code == SEND_FAILED
    assert rejection.description == (
        "SendRequest failed (schema_violation): PersonINN: '12' is not a valid value"
    )
    assert await world.bus.depth(Direction.REQUESTS, "MVD_MIGR") == 0
    for agency in ("ZAGS", "FNS"):
        assert await world.bus.depth(Direction.REQUESTS, agency) == 1


class _Died(BaseException):
    """The gateway process dying mid-submit (not an error the aggregator handles)."""


async def test_a_retried_submit_sends_the_parts_a_dead_process_never_sent(
    world: World,
) -> None:
    class DyingClient:
        ids = world.bus.client(PORTAL).ids

        def prepare_request(self, *_: Any, **__: Any) -> Any:
            async def send() -> Any:
                raise _Died

            return send

    dying = Aggregator(
        catalogue=CATALOGUE,
        registry=world.bus.registry,
        store=world.store,
        clients=lambda _participant: DyingClient(),  # type: ignore[arg-type, return-value]
        clock=world.bus.clock,
    )
    with pytest.raises(_Died):
        await dying.submit(
            service=SERVICE, applicant=APPLICANT, participant=PORTAL, idempotency_key="k-9"
        )
    # Created and linked, but nothing reached the bus.
    assert all(v == 0 for v in (await world.bus.depths()).values())

    again, created = await world.agg.submit(
        service=SERVICE, applicant=APPLICANT, participant=PORTAL, idempotency_key="k-9"
    )
    assert not created
    for agency, _ in AGENCIES.values():
        assert await world.bus.depth(Direction.REQUESTS, agency) == 1
    # A second retry finds every part on the bus already: nothing is queued twice.
    await world.agg.submit(
        service=SERVICE, applicant=APPLICANT, participant=PORTAL, idempotency_key="k-9"
    )
    for agency, _ in AGENCIES.values():
        assert await world.bus.depth(Direction.REQUESTS, agency) == 1
    await world.answer_all()
    await pump(world.bus, world.agg)
    assert (await world.agg.get(str(again.id))).status is ServiceState.COMPLETED


class CountingReads(SqliteServiceRequests):
    """Counts the reads an aggregator makes to correlate and apply a reply."""

    reads = 0

    async def get(self, id: str | uuid.UUID) -> ServiceRequestRecord:
        self.reads += 1
        return await super().get(id)

    async def by_message(self, message_id: str | uuid.UUID) -> LinkedRequest | None:
        self.reads += 1
        return await super().by_message(message_id)


async def test_replies_to_what_this_process_sent_are_applied_without_a_read(
    world: World,
) -> None:
    store = CountingReads(world.store.database)
    agg = world.aggregator(store)
    record = await submit(world, agg)
    await world.answer_all()
    assert await pump(world.bus, agg) == 3
    assert store.reads == 0  # the record and links it created and saved, kept
    done = await world.agg.get(str(record.id))
    assert done.status is ServiceState.COMPLETED
    # The first reply saved alone; the two that waited for its write, together.
    assert done.version == 3


async def test_a_kept_record_another_process_saved_since_is_re_read_not_overwritten(
    world: World,
) -> None:
    store = CountingReads(world.store.database)
    agg = world.aggregator(store)
    record = await submit(world, agg)
    await world.answer("birth-record")
    assert await pump(world.bus, world.aggregator()) == 1  # another process saves v2
    await world.answer("parent-registration")
    assert await pump(world.bus, agg) == 1  # its kept v1 is refused, re-read, re-applied
    assert store.reads == 1
    done = await world.agg.get(str(record.id))
    assert parts(done.state)["birth-record"] is PartStatus.ANSWERED
    assert parts(done.state)["parent-registration"] is PartStatus.ANSWERED
    assert done.version == 3


async def test_a_reply_to_a_request_another_process_sent_is_applied_after_one_read(
    world: World,
) -> None:
    record = await submit(world)  # sent and kept by world.agg, not by this one
    store = CountingReads(world.store.database)
    await world.answer("birth-record")
    assert await pump(world.bus, world.aggregator(store)) == 1
    assert store.reads == 1  # the link and the record it belongs to, together
    done = await world.agg.get(str(record.id))
    assert parts(done.state)["birth-record"] is PartStatus.ANSWERED
    assert done.version == 2
