"""A provider's answer held while the reply it answers waits for others.

The bus answers a SendResponse (a signed SendResponseResponse) once the response is
journaled. A response handed over to a turn that gathers a fan-out's replies
(:mod:`gateway.aggregator.reply_turns`) waits there for the others, and nobody waits
for its answer but its provider. Answered at once, the answer's work (signed here;
verified, and its delivery acked, by the adapter; the ack taken by RabbitMQ) takes the
cores while the fan-out's other replies are still to come; answered as the turn's
write began, it slowed that write (on 2 cores, three replies' write 2.7-3.1 ms
against 1.3-1.9 for one; 2.0 held as follows). So the turn lets the answers of the
replies that waited in it go once the request's outcome is out: its write, and the
result callback that write made due, attempted (:meth:`Aggregator.callbacks_attempted
<gateway.aggregator.service.Aggregator.callbacks_attempted>`); the reply that
completes the turn waited for no other, and is answered as its write begins, as a
single part's is. Measured in a three-part fan-out on 2 cores
(``benchmarks/chains.py``, both trees in turn, roles swapped): the fan-out about 10 %
faster at C = 1, single parts unchanged, 8 in flight unchanged.

A provider that sends its next answer only once this one is answered would hold up a
turn that waits for that next answer. So an answer is held only while its provider
has no request from this process still to answer (:meth:`SentRequests.awaits
<gateway.router.sent.SentRequests.awaits>`), let go as soon as one is queued to it,
and never longer than the turn's gathering window: a client answering for several
providers one after another waits that long at most (20 ms by default).
"""

from __future__ import annotations

import asyncio

from gateway.router.sent import SentRequests


class AnswerHolds:
    """The answers held in this process, by provider."""

    def __init__(self, sent: SentRequests) -> None:
        self._sent = sent
        self._held: dict[str, set[asyncio.Event]] = {}

    async def hold(self, provider: str, answerable: asyncio.Event, at_most: float) -> None:
        """Until ``answerable`` is set (the reply's turn lets its answer go), for at
        most ``at_most`` seconds, unless ``provider`` has a request to answer. Not
        held, the answer still waits two turns of the loop: one for the take's task to
        start, one for the task of a turn gathering the request's replies (which this
        one may complete) to wake and write them (measured in a three-part fan-out: the
        write 0.17 ms after the last reply's take starts, against 0.52 with one)."""
        if at_most <= 0 or self._sent.awaits(provider):
            for _ in range(2):
                await asyncio.sleep(0)
            return
        held = self._held.setdefault(provider, set())
        held.add(answerable)
        try:
            async with asyncio.timeout(at_most):
                await answerable.wait()
        except TimeoutError:
            pass  # the turn still gathers: the provider need not wait for it
        finally:
            held.discard(answerable)
            if not held and self._held.get(provider) is held:
                del self._held[provider]

    def release(self, provider: str) -> None:
        """A request was queued to ``provider``: its answers held go now."""
        for answerable in self._held.pop(provider, ()):
            answerable.set()
