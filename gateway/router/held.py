"""Deliveries this gateway process holds: handed out and awaiting their Ack, or set
aside by a pull filtered by message type (see :mod:`gateway.router.pulls`)."""

from __future__ import annotations

from gateway.transport.base import HEADER_TYPE, Delivery, Direction


class PulledMessages:
    """Unsettled pulled deliveries by (participant, MessageID).

    An entry disappears when the delivery is settled in any way, including the
    transport's visibility timeout giving it back to the queue.
    """

    def __init__(self) -> None:
        self._held: dict[tuple[str, str], Delivery] = {}
        #: Held requests their holder has answered since (their Ack changes nothing).
        self._answered: set[tuple[str, str]] = set()

    def hold(self, participant: str, delivery: Delivery) -> None:
        key = (participant, delivery.message.message_id)
        self._held[key] = delivery
        delivery.on_settle(lambda: self._forget(key, delivery))

    def take(self, participant: str, message_id: str) -> Delivery | None:
        delivery = self._held.get((participant, message_id))
        return None if delivery is None or delivery.settled else delivery

    def mark_answered(self, participant: str, message_id: str) -> None:
        """``participant`` answered the held request ``message_id`` (final answer)."""
        if self.take(participant, message_id) is not None:
            self._answered.add((participant, message_id))

    def answered(self, participant: str, message_id: str) -> bool:
        return (participant, message_id) in self._answered

    def _forget(self, key: tuple[str, str], delivery: Delivery) -> None:
        if self._held.get(key) is delivery:
            del self._held[key]
            self._answered.discard(key)

    def __len__(self) -> int:
        return len(self._held)


#: Most messages of other types a filtered pull sets aside per participant's queue.
PARK_LIMIT = 64


class ParkedMessages:
    """Deliveries taken from a queue by a filtered pull and not wanted by it, oldest first.

    An entry disappears when it is taken or settled (the visibility timeout gives it
    back to the queue).
    """

    def __init__(self) -> None:
        self._parked: dict[tuple[Direction, str], list[Delivery]] = {}

    def park(self, key: tuple[Direction, str], delivery: Delivery) -> None:
        parked = self._parked.setdefault(key, [])
        parked.append(delivery)
        delivery.on_settle(lambda: _discard(parked, delivery))

    def take(self, key: tuple[Direction, str], namespace: str | None) -> Delivery | None:
        parked = self._parked.get(key, [])
        for delivery in parked:
            if not delivery.settled and of_type(delivery, namespace):
                parked.remove(delivery)
                return delivery
        return None

    def count(self, key: tuple[Direction, str]) -> int:
        return len(self._parked.get(key, ()))


def _discard(parked: list[Delivery], delivery: Delivery) -> None:
    if delivery in parked:
        parked.remove(delivery)


def of_type(delivery: Delivery, namespace: str | None) -> bool:
    return namespace is None or delivery.message.headers.get(HEADER_TYPE) == namespace
