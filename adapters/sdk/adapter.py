"""What an adapter author writes: one async handler per message type, and its answers.

An adapter turns requests of the message types its agency provides into calls of the
agency's own interface (SOAP, XML over HTTP, ...). It declares its types as a mapping
from the type's namespace URI to an async handler; everything else (pulling or
consuming requests, signatures, XSD validation, SendResponse, Ack, retries, logs,
metrics) is the kit's (:class:`adapters.sdk.runner.AdapterRunner`).

A handler gets the business element of the request, already verified (bus and consumer
signatures) and valid against its XSD, plus a :class:`RequestContext`; it returns one
of:

* the response business element (an lxml element of the same namespace);
* :class:`Reject` with a :class:`~gateway.core.envelope.RejectionCode` (``NO_DATA`` for
  "no such record", ``ACCESS_DENIED``, ``INVALID_REQUEST``, ...);
* :class:`Processing`: an interim ``AsyncProcessingStatus``; the final answer follows
  later through :meth:`AdapterRunner.send_answer`.

Failures of the agency call are raised, not returned: :class:`AgencyUnavailable`
(down, timeout, HTTP 5xx; the kit retries with backoff, then rejects with
``AGENCY_UNAVAILABLE``) or :class:`AgencyError` (an error answer or a malformed one;
the kit rejects with ``FAILURE``). Wrap native calls in
:func:`adapters.sdk.native_calls.agency_call` and httpx/zeep/lxml exceptions are
translated into these two for you. Any other exception is a bug in the adapter: the
kit logs it and rejects with ``FAILURE``; the request is never dropped.
"""

from __future__ import annotations

import uuid
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Protocol

from lxml import etree

from gateway.core.envelope import RejectionCode
from gateway.core.errors import ProviderFailure


@dataclass(frozen=True)
class RequestContext:
    """What a handler knows about the request besides its content."""

    message_id: uuid.UUID
    """The request's MessageID (the consumer's)."""
    reply_to: str
    """Where the answer goes (the bus's ``ReplyTo``); the kit uses it."""
    sender: str
    """Mnemonic of the consumer that asked (e.g. ``PORTAL``)."""
    message_type: str
    """Namespace URI of the request content."""
    test: bool = False
    """``TestMessage``: answer from test data, cause no business effect."""
    eol: datetime | None = None


@dataclass(frozen=True)
class Reject:
    """Decline the request with an SMEV rejection code and a reason a person can read."""

    code: RejectionCode
    description: str


@dataclass(frozen=True)
class Processing:
    """An interim ``AsyncProcessingStatus``; ``category`` is an SMEV InteractionStatusType."""

    category: str = "underProcessing"
    details: str | None = None


Answer = etree._Element | Reject | Processing
Handler = Callable[[etree._Element, RequestContext], Awaitable[Answer]]


class Adapter(Protocol):
    """One agency's adapter: the message types it answers and how."""

    @property
    def name(self) -> str:
        """Short name for logs and the CLI (``zags``, ``mvd_migration``)."""
        ...

    def handlers(self) -> Mapping[str, Handler]:
        """Message type (content namespace URI) -> handler; read once by the runner."""
        ...


class AgencyUnavailable(ProviderFailure):
    """The agency did not answer: unreachable, timed out, or HTTP 5xx. Retried by the kit."""

    transient = True


class AgencyError(ProviderFailure):
    """The agency answered, but with an error or with something unusable. Not retried."""

    transient = False
