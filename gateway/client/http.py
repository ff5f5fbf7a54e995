"""The HTTP transport of :class:`gateway.client.participant.ParticipantClient`: POST to /ws."""

from __future__ import annotations

import httpx

from gateway.client.participant import Call


def http_call(client: httpx.AsyncClient, url: str) -> Call:
    """A :data:`~gateway.client.participant.Call` that POSTs SOAP 1.1 to ``url``."""

    async def call(soap: bytes) -> tuple[int, bytes]:
        response = await client.post(
            url, content=soap, headers={"Content-Type": "text/xml; charset=utf-8"}
        )
        return response.status_code, response.content

    return call
