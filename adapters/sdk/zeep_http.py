"""zeep's asynchronous transport with the operations on aiohttp.

zeep's own :class:`~zeep.transports.AsyncTransport` posts through an
``httpx.AsyncClient``, which cost four times aiohttp's CPU per POST here (430-530
against 100-115 us): the adapters' agency calls and their client of the bus share
aiohttp instead. The WSDL and what it imports are still read once, synchronously, when
the client is built (zeep loads them so), by the ``wsdl_client`` given. TLS is checked
against the system's trust store (aiohttp's default; httpx used certifi's).
"""

from __future__ import annotations

import logging

import aiohttp
import httpx
from lxml import etree
from requests import Response
from requests.structures import CaseInsensitiveDict
from zeep.transports import AsyncTransport
from zeep.wsdl.utils import etree_to_string

from adapters.sdk.xml_http import AgencySession, env_proxy


class AiohttpTransport(AsyncTransport):
    """Operations POSTed over one :class:`~adapters.sdk.xml_http.AgencySession`
    (``self._agency``: zeep's own transports keep a requests session in ``session``).
    ``timeout`` bounds the connect and then each read of an answer; redirects are not
    followed (a 3xx is the service's error); the proxy is the environment's for the
    operation's address, as with httpx."""

    def __init__(self, wsdl_client: httpx.Client, *, timeout: float, limit: int) -> None:
        # Not AsyncTransport.__init__: it would build an httpx.AsyncClient.
        self.cache = None
        self._close_session = False  # read by zeep's Transport.__del__
        self.wsdl_client = wsdl_client
        self.logger = logging.getLogger("zeep.transports")
        self._agency = AgencySession(
            aiohttp.ClientTimeout(total=None, sock_connect=timeout, sock_read=timeout), limit
        )

    async def post_xml(
        self, address: str, envelope: etree._Element, headers: dict[str, str]
    ) -> Response:
        """The answer as the ``requests.Response`` zeep reads (status, headers, body)."""
        body: bytes = etree_to_string(envelope)  # type: ignore[no-untyped-call]
        async with self._agency.get().post(
            address, data=body, headers=headers, allow_redirects=False, proxy=env_proxy(address)
        ) as answer:
            content = await answer.read()
            response = Response()
            response._content = content
            response.status_code = answer.status
            response.headers = CaseInsensitiveDict(answer.headers)
            response.encoding = answer.charset
            return response

    async def aclose(self) -> None:
        await self._agency.aclose()
