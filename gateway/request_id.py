"""The request id: one id that follows a service request across the bus's processes.

Taken from a client's ``X-Request-ID`` (or made) where a request enters the gateway over
HTTP (:mod:`gateway.api.request_id`), carried on the bus as the ``request-id`` header of
every message published while it is bound, bound by the adapters while they answer such a
message, and sent back on their SendResponse as ``X-Request-ID``: the answer, and the
aggregator's handling of it, log under the same id. A message taken by a pull (SOAP
GetRequest, GetResponse), whose wire format has no place for the id, comes with it in the
HTTP answer's ``X-Request-ID`` (:func:`adopt` on the gateway, :func:`answered` on the
client). Every log line made while one is
bound carries it as ``request_id`` (:func:`add_request_id`, in
:func:`gateway.logs.configure_logging`), so ``grep`` finds one request in every process's
log.
"""

from __future__ import annotations

import os
import re
from contextlib import AbstractContextManager
from contextvars import ContextVar, Token
from typing import Final

from structlog.typing import EventDict, WrappedLogger

#: The HTTP header, on requests to the gateway and on its answers.
HTTP_HEADER: Final = "X-Request-ID"
#: What a client's id may look like (anything else is replaced by a new one): short,
#: and nothing a log reader or a header could trip over.
_ACCEPTABLE: Final = re.compile(r"[A-Za-z0-9._:@+=-]{1,128}")

_current: ContextVar[str | None] = ContextVar("smevbus_request_id", default=None)
#: What the gateway answered an HTTP call with (client side).
_answered: ContextVar[str | None] = ContextVar("smevbus_answered_request_id", default=None)


def new() -> str:
    return os.urandom(16).hex()  # as random as uuid4().hex, a fifth of its cost


def accepted(offered: str | None) -> str:
    """``offered`` if it is an acceptable id, else a new one."""
    return offered if offered is not None and _ACCEPTABLE.fullmatch(offered) else new()


def current() -> str | None:
    """The id bound in this context, if any."""
    return _current.get()


def bound(request_id: str | None) -> AbstractContextManager[None]:
    """Bind ``request_id`` (None: none) for the code run inside."""
    return _Bound(request_id)


class _Bound:
    # A class, not @contextmanager: every HTTP exchange enters one, and the generator
    # version costs twice the Python calls.
    __slots__ = ("request_id", "token")
    token: Token[str | None]

    def __init__(self, request_id: str | None) -> None:
        self.request_id = request_id

    def __enter__(self) -> None:
        self.token = _current.set(self.request_id)

    def __exit__(self, *_: object) -> None:
        _current.reset(self.token)


def adopt(request_id: str | None) -> None:
    """Go on under ``request_id`` (if acceptable) for the rest of this exchange: the
    gateway handing out a message by pull logs, and answers, under the message's id.
    The enclosing :func:`bound` restores the exchange's own id when it ends."""
    if request_id is not None and _ACCEPTABLE.fullmatch(request_id):
        _current.set(request_id)


def note_answer(request_id: str | None) -> None:
    """Remember the gateway's ``X-Request-ID`` answer to this context's last HTTP call."""
    _answered.set(request_id if request_id is None or _ACCEPTABLE.fullmatch(request_id) else None)


def answered() -> str | None:
    """The request id the gateway answered this context's last HTTP call with, if any:
    after a pull that took a message, the id the message was published under."""
    return _answered.get()


def add_request_id(logger: WrappedLogger, method_name: str, event: EventDict) -> EventDict:
    """A structlog processor: the bound request id as ``request_id``."""
    request_id = _current.get()
    if request_id is not None:
        event.setdefault("request_id", request_id)
    return event
