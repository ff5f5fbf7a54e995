"""Requests this process queued lately, kept so that their SendResponse needs no read.

What SendResponse checks of a request (its sender, recipient, type, end of life, test
flag) never changes once journaled. Its state and version may be stale (another
process moved it, or a pull handed it out): the journal's answer is conditional on
them (``Journal.answer(seen=...)``) and decides again on the locked row when they
are. Most answers reach the process that queued their request; the others read the
journal, as before. A request leaves once answered (RESPONDED); the least recently
used leave beyond :data:`LIMIT`. Whether a provider still has a request kept here to
answer (:meth:`SentRequests.awaits`) decides whether its answer may be held
(:mod:`gateway.router.holds`).
"""

from __future__ import annotations

import dataclasses
from collections import Counter, OrderedDict
from typing import Final

from gateway.core.envelope import MessageKind
from gateway.core.lifecycle import MessageState
from gateway.store.records import MessageRecord

#: Requests kept at most.
LIMIT: Final = 10_000


class SentRequests:
    def __init__(self, limit: int = LIMIT) -> None:
        self._limit = limit
        self._records: OrderedDict[str, MessageRecord] = OrderedDict()
        #: Requests kept, by recipient.
        self._to: Counter[str] = Counter()

    def keep(self, record: MessageRecord) -> None:
        """``record`` (a request) as the journal last told it; forgotten once answered."""
        if record.kind is not MessageKind.REQUEST:
            return
        if record.state is MessageState.RESPONDED:
            self._forget(record.message_id)
            return
        # Its body is never needed here, and would make the kept requests weigh megabytes.
        # The journal's moves and accepts leave it out already: no copy then.
        if record.xml is not None:
            record = dataclasses.replace(record, xml=None)
        if record.message_id not in self._records:
            self._to[record.recipient] += 1
        self._records[record.message_id] = record
        self._records.move_to_end(record.message_id)
        while len(self._records) > self._limit:
            self._forget(next(iter(self._records)))

    def _forget(self, message_id: str) -> None:
        record = self._records.pop(message_id, None)
        if record is not None:
            self._to[record.recipient] -= 1
            if not self._to[record.recipient]:
                del self._to[record.recipient]

    def awaits(self, recipient: str) -> bool:
        """Whether a request to ``recipient`` kept here is not answered yet."""
        return recipient in self._to

    def get(self, message_id: str) -> MessageRecord | None:
        return self._records.get(message_id)

    def __len__(self) -> int:
        return len(self._records)
