"""A consumer that refuses a request at once can dead-letter it before its publisher
has journaled it QUEUED. The journal must still end DEAD_LETTERED (so an operator can
replay it), and the publisher, second, must carry on.

Seen in CI: an adapter with a stale trust store refused a request within the
milliseconds between the broker's confirm and the gateway's ACCEPTED -> QUEUED move;
the dead letter was then "not journaled" (ACCEPTED -> DEAD_LETTERED is not a move),
the journal said QUEUED forever, and the dead letter could not be replayed.
"""

from __future__ import annotations

from gateway.core.copies import why_not_replayable
from gateway.core.lifecycle import MessageState
from gateway.router.deadletters import DeadLetterJournal
from gateway.testing.bus import START, Bus, send_request_body, soap, uuid1_at
from gateway.transport.base import DeadLetter, DeadLetterEvent, DeadLetterReason, Direction, Message

REFUSAL = "signature_invalid: the consumer's signature does not verify"


def refuse_on_publish(bus: Bus, refused: list[str]) -> None:
    """Right after the broker has the message (before the publisher journals QUEUED),
    its consumer refuses it and the dead-letter event is recorded."""
    publish = bus.transport.publish
    journal = DeadLetterJournal(bus.journal, bus.clock)

    async def publish_then_refuse(direction: Direction, participant: str, message: Message) -> None:
        await publish(direction, participant, message)
        assert (await bus.journal.get(message.message_id)).state is MessageState.ACCEPTED
        letter = DeadLetter(message, DeadLetterReason.REJECTED, REFUSAL)
        await journal.record(DeadLetterEvent(direction, participant, letter))
        refused.append(message.message_id)

    bus.transport.publish = publish_then_refuse  # type: ignore[method-assign]


async def test_a_request_refused_before_its_publisher_journaled_it_queued(bus: Bus) -> None:
    refused: list[str] = []
    refuse_on_publish(bus, refused)
    message_id = uuid1_at(START)
    reply = await bus.send(soap(send_request_body(bus.pki.signer("PORTAL"), message_id=message_id)))

    assert reply.ok, reply  # the sender's request was accepted
    assert refused == [str(message_id)]
    history = (await bus.report(message_id)).history
    assert [str(t.state) for t in history] == ["ACCEPTED", "QUEUED", "DEAD_LETTERED"]
    assert history[-1].reason == f"rejected: {REFUSAL}"
    assert why_not_replayable((await bus.journal.get(str(message_id))).state) is None
