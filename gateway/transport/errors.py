"""Transport failures, placed in the one error tree of :mod:`gateway.core.errors`."""

from __future__ import annotations

from typing import ClassVar

from gateway.core.errors import DestinationUnknown, InternalError, NotFound, Origin


class QueueNotDeclared(DestinationUnknown):
    """No queue exists for this participant and direction: a publish would be unroutable.

    The router checks the registry before publishing, so reaching this means the
    registry and the broker topology disagree: the bus is at fault, not the client.
    """

    origin: ClassVar[Origin] = Origin.BUS
    http_status: ClassVar[int] = 500


class TransportUnavailable(InternalError):
    """The broker could not be reached, or did not confirm in time; retry later."""


class PublishRefused(InternalError):
    """The broker negatively confirmed a publish (e.g. a queue refusing new messages)."""


class DeliveryNotHeld(NotFound):
    """The delivery is no longer ours to settle.

    It was already settled, or its visibility timeout lapsed and the message went
    back to its queue (a SOAP ``Ack`` arriving too late lands here).
    """
