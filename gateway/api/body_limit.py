"""A size limit on REST request bodies, enforced before anything parses them.

:class:`BodyLimit` is ASGI middleware for the paths under a prefix (``/api/v1``): a
declared ``Content-Length`` over the limit is refused at once; any other body (chunked
included) is read up to the limit and refused as soon as it exceeds it, so at most
``limit`` bytes are ever held. The refusal is ``413`` problem+json
(``message_too_large``); an accepted body is handed to the app unchanged. ``/ws`` has
its own, larger limit (:func:`gateway.api.app.create_app`).
"""

from __future__ import annotations

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from gateway.api.rest import problem_response
from gateway.core.errors import MessageTooLarge


class BodyLimit:
    def __init__(self, app: ASGIApp, *, limit: int, prefix: str) -> None:
        self.app = app
        self.limit = limit
        self.prefix = prefix

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or not scope["path"].startswith(self.prefix):
            await self.app(scope, receive, send)
            return
        declared = dict(scope["headers"]).get(b"content-length", b"")
        if declared.isdigit() and int(declared) > self.limit:
            await self._refuse(scope, receive, send, declared=int(declared))
            return
        received: list[Message] = []
        size = 0
        while True:
            message = await receive()
            received.append(message)
            if message["type"] != "http.request":
                break  # the client went away: let the app see it
            size += len(message.get("body", b""))
            if size > self.limit:
                await self._refuse(scope, receive, send)
                return
            if not message.get("more_body", False):
                break

        async def replay() -> Message:
            return received.pop(0) if received else await receive()

        await self.app(scope, replay, send)

    async def _refuse(
        self, scope: Scope, receive: Receive, send: Send, *, declared: int | None = None
    ) -> None:
        size = "" if declared is None else f"{declared} bytes, "
        error = MessageTooLarge(
            f"the request body is {size}over the limit of {self.limit} bytes", limit=self.limit
        )
        await problem_response(error, instance=scope["path"])(scope, receive, send)
