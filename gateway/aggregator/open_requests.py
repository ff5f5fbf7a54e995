"""The pending service requests this process created or saved last, kept to apply
their replies without reading the store first.

A reply names its request's MessageID; the store links it to a service request and a
part, and holds the record. Most replies reach the process that sent the request and
saved it last, so that process knows both: it applies the reply to the record it
holds and saves, one statement instead of two (another process first reads the link
and the record together: :meth:`~gateway.store.base.ServiceRequests.by_message`).
What it holds may be stale (another process saved since): the save is a
compare-and-set on the version, so a stale record costs a refused save and a re-read,
never a lost change. A final record leaves (a late reply reads the store, which says
it is final); the least recently used ones leave beyond :data:`LIMIT`.
"""

from __future__ import annotations

import uuid
from collections import OrderedDict
from typing import Final

from gateway.store.service_requests import MessageLink, ServiceRequestRecord

#: Records kept at most.
LIMIT: Final = 10_000


class OpenRequests:
    def __init__(self, limit: int = LIMIT) -> None:
        self._limit = limit
        self._records: OrderedDict[uuid.UUID, ServiceRequestRecord] = OrderedDict()
        self._links: dict[uuid.UUID, MessageLink] = {}

    def keep(self, record: ServiceRequestRecord) -> None:
        """``record`` as this process last stored or read it; forgotten once final. An
        older version than the one kept (two saves returning out of order) is ignored."""
        kept = self._records.get(record.id)
        if kept is not None and kept.version > record.version:
            return
        self.forget(record.id)
        if record.state.final:
            return
        self._records[record.id] = record
        for part in record.state.parts:
            if part.message_id is not None:
                self._links[part.message_id] = MessageLink(record.id, part.id)
        while len(self._records) > self._limit:
            self.forget(next(iter(self._records)))

    def forget(self, sr_id: uuid.UUID) -> None:
        record = self._records.pop(sr_id, None)
        if record is not None:
            for part in record.state.parts:
                if part.message_id is not None:
                    self._links.pop(part.message_id, None)

    def link(self, message_id: uuid.UUID) -> MessageLink | None:
        """The part a request with ``message_id`` was sent for, if its record is kept."""
        return self._links.get(message_id)

    def record(self, sr_id: uuid.UUID) -> ServiceRequestRecord | None:
        record = self._records.get(sr_id)
        if record is not None:
            self._records.move_to_end(sr_id)
        return record

    def __len__(self) -> int:
        return len(self._records)
