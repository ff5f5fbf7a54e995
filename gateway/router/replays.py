"""The replay guard of pulls: a signed GetRequest or GetResponse is served once.

A pull's signed ``MessageTypeSelector`` carries a ``Timestamp`` that must lie within
the clock skew of now (:func:`~gateway.core.admission.check_timestamp`), but within
that window the same signed bytes would hand their poster the next queued message,
with its personal data. So the journal remembers every pull it served, keyed by what
its signature signs (:func:`~gateway.crypto.envelope.signed_bytes`) and who signed
it, until the window has passed (:func:`~gateway.core.admission.replay_window_end`);
the table is shared by every gateway process on the database. The check comes
before anything is taken from a queue: a refused replay moves nothing. The digest is
journaled first, the delivery it makes after it, each in its own transaction; a pull
that fails is forgotten again, so that its retry is served
(:meth:`~gateway.store.base.Journal.pull`).

``GetStatus`` hands out a notice once, so it is guarded the same way (its signed
``Timestamp``). ``Ack`` is not guarded: it carries no timestamp, so there is no window
after which a digest could be forgotten, and a replay gains nothing: an ``Ack`` of a
settled message is refused (``not_found``) or changes nothing.
``GetIncomingQueueStatistics`` hands out nothing but counts. TLS on
``/ws`` keeps requests from being captured on the wire, and mutual TLS keeps anyone
but their signer from posting them (:mod:`gateway.api.tls`).
"""

from __future__ import annotations

import hashlib
from contextlib import AbstractAsyncContextManager
from datetime import datetime
from types import TracebackType

from lxml import etree

from gateway.core.admission import replay_window_end
from gateway.core.errors import ReplayedRequest
from gateway.core.registry import Participant
from gateway.crypto.envelope import signed_bytes
from gateway.router.context import BusContext
from gateway.store.base import PullWindow, Store


class ReplayGuard:
    def __init__(self, ctx: BusContext, store: Store) -> None:
        self.ctx = ctx
        self.store = store

    def admit(
        self, body: etree._Element, caller: Participant, operation: str, timestamp: datetime
    ) -> AbstractAsyncContextManager[PullWindow]:
        """Remember the signed pull ``body`` of ``caller`` (verified, its ``timestamp``
        checked); raise :class:`ReplayedRequest` if it was served before. Inside the
        block the caller takes and journals the delivery; if the block raises, the pull
        is forgotten."""
        pull = self.store.pull(
            _digest(body, caller),
            caller.mnemonic,
            expires_at=replay_window_end(timestamp, self.ctx.time_policy),
            now=self.ctx.clock.now(),
        )
        return _Admission(pull, operation, timestamp)

    async def admit_once(
        self, body: etree._Element, caller: Participant, operation: str, timestamp: datetime
    ) -> None:
        """Like :meth:`admit` for a request that delivers nothing from a queue
        (``GetStatus``): remember it, or raise :class:`ReplayedRequest`."""
        first = await self.store.remember(
            _digest(body, caller),
            caller.mnemonic,
            expires_at=replay_window_end(timestamp, self.ctx.time_policy),
            now=self.ctx.clock.now(),
        )
        if not first:
            raise _replayed(operation, timestamp)


class _Admission:
    """The journal's pull block, refused on entry if the pull is a replay: a class, not
    an async generator around it (one per signed pull)."""

    __slots__ = ("_operation", "_pull", "_timestamp")

    def __init__(
        self, pull: AbstractAsyncContextManager[PullWindow], operation: str, timestamp: datetime
    ) -> None:
        self._pull = pull
        self._operation = operation
        self._timestamp = timestamp

    async def __aenter__(self) -> PullWindow:
        window = await self._pull.__aenter__()
        if window.first:
            return window
        # A replay ends the pull's block as a raise inside it would (the digest stays:
        # it is the replayed pull's).
        replayed = _replayed(self._operation, self._timestamp)
        await self._pull.__aexit__(ReplayedRequest, replayed, None)
        raise replayed

    async def __aexit__(
        self,
        kind: type[BaseException] | None,
        error: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        await self._pull.__aexit__(kind, error, traceback)


def _digest(body: etree._Element, caller: Participant) -> str:
    return hashlib.sha256(caller.mnemonic.encode() + b"\n" + signed_bytes(body)).hexdigest()


def _replayed(operation: str, timestamp: datetime) -> ReplayedRequest:
    return ReplayedRequest(
        f"this signed {operation} (Timestamp {timestamp.isoformat()}) was already received; "
        "a signed request is served once: sign a new one with a fresh Timestamp",
        timestamp=timestamp.isoformat(),
    )
