"""Deliveries handed out by GetRequest/GetResponse and waiting for the caller's Ack."""

from __future__ import annotations

from gateway.transport.base import Delivery


class PulledMessages:
    """Unsettled pulled deliveries by (participant, MessageID).

    An entry disappears when the delivery is settled in any way, including the
    transport's visibility timeout giving it back to the queue.
    """

    def __init__(self) -> None:
        self._held: dict[tuple[str, str], Delivery] = {}

    def hold(self, participant: str, delivery: Delivery) -> None:
        key = (participant, delivery.message.message_id)
        self._held[key] = delivery
        delivery.on_settle(lambda: self._forget(key, delivery))

    def take(self, participant: str, message_id: str) -> Delivery | None:
        delivery = self._held.get((participant, message_id))
        return None if delivery is None or delivery.settled else delivery

    def _forget(self, key: tuple[str, str], delivery: Delivery) -> None:
        if self._held.get(key) is delivery:
            del self._held[key]

    def __len__(self) -> int:
        return len(self._held)
