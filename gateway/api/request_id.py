"""``X-Request-ID`` at the gateway's HTTP door: accepted or made, bound, answered.

Every HTTP exchange (SOAP ``/ws``, REST, the rest) runs with a request id bound
(:mod:`gateway.request_id`): the client's ``X-Request-ID`` if it is acceptable, else a
new one. The answer carries it back in the same header (or, when the exchange was a pull
that handed out a message, that message's id), and so does every message the exchange
publishes on the bus.
"""

from __future__ import annotations

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from gateway import request_id

_HEADER = request_id.HTTP_HEADER.lower().encode("latin-1")


def offered(scope: Scope) -> str | None:
    """The client's ``X-Request-ID``, if it sent one."""
    for name, value in scope["headers"]:
        if name == _HEADER:
            text: str = value.decode("latin-1")
            return text
    return None


async def serve(app: ASGIApp, scope: Scope, receive: Receive, send: Send) -> None:
    """Run ``app`` for one HTTP exchange with its request id bound and answered."""
    current = request_id.accepted(offered(scope))

    async def answering(message: Message) -> None:
        if message["type"] == "http.response.start":
            # The id bound now: the exchange's, or the one of a message a pull handed
            # out (request_id.adopt).
            answer = request_id.current() or current
            message["headers"] = [*message.get("headers", ()), (_HEADER, answer.encode())]
        await send(message)

    with request_id.bound(current):
        await app(scope, receive, answering)
