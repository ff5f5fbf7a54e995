"""The ZAGS adapter: bus birth/marriage/death record requests -> the registry's SOAP service.

One zeep :class:`~zeep.AsyncClient` per process, built from the registry's WSDL URL by
:func:`build_zags_adapter` and reused for every call: the WSDL is fetched once, at
build time (synchronously, by zeep, over httpx), and the operations run on the event
loop over aiohttp (:class:`~adapters.sdk.zeep_http.AiohttpTransport`, the HTTP client
of the adapters' agency calls and of their client of the bus; no worker thread).
The runner's ``call_timeout`` bounds the wait, and ``operation_timeout`` bounds each
HTTP exchange. Every call goes through :func:`adapters.sdk.native_calls.agency_call`, so:

* connection refused, timeouts, HTTP 5xx without a Fault (e.g. the registry's 503
  during an outage) -> :class:`AgencyUnavailable`: retried, then ``AGENCY_UNAVAILABLE``;
* a Fault ``INTERNAL_ERROR`` (soap:Server, "may succeed later") -> :class:`AgencyUnavailable`;
* a Fault ``INVALID_REQUEST`` -> a ``INVALID_REQUEST`` rejection;
* any other Fault, cut-off or unparseable XML -> :class:`AgencyError` (``FAILURE``).

``totalFound`` 0 is answered with a ``NO_DATA`` rejection. The mapping itself is in
:mod:`adapters.zags.mapping`.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import httpx
import zeep
import zeep.exceptions
from lxml import etree
from zeep.proxy import AsyncServiceProxy

from adapters.sdk.adapter import (
    AgencyError,
    AgencyUnavailable,
    Answer,
    Handler,
    Reject,
    RequestContext,
)
from adapters.sdk.native_calls import agency_call
from adapters.sdk.zeep_http import AiohttpTransport
from adapters.zags.mapping import (
    MAPPINGS,
    TypeMapping,
    UnmappableRecord,
    acts_of,
    response_content,
)
from gateway.core.envelope import RejectionCode
from gateway.xml.text import find_text

REGISTRY_NS = "urn://zags.example/registry/1.0"
BINDING = f"{{{REGISTRY_NS}}}ZagsRegistrySoapBinding"
#: Seconds zeep waits for the WSDL, and for one registry operation (connect, and then
#: each read or write of it, as the ``timeout`` of requests before).
WSDL_TIMEOUT = 10.0
OPERATION_TIMEOUT = 10.0
#: Connections kept to the registry (the runner's workers share them).
LIMIT = 50


class ZagsAdapter:
    """Answers the three ZAGS bus types from the civil registry over SOAP."""

    name = "zags"

    def __init__(self, client: zeep.AsyncClient, *, endpoint: str | None = None) -> None:
        self.client = client
        self._service: Any = client.service
        if endpoint is not None:
            self.use_endpoint(endpoint)

    def handlers(self) -> Mapping[str, Handler]:
        return {mapping.message_type: self._handler(mapping) for mapping in MAPPINGS}

    @property
    def endpoint(self) -> str:
        address: str = self._service._binding_options["address"]
        return address

    def use_endpoint(self, address: str) -> None:
        """Call the registry at ``address`` instead of the WSDL's ``soap:address``."""
        # AsyncClient.create_service would make a synchronous proxy (zeep 4.3).
        binding = self.client.wsdl.bindings[BINDING]
        self._service = AsyncServiceProxy(  # type: ignore[no-untyped-call]
            self.client, binding, address=address
        )

    async def aclose(self) -> None:
        """Close the zeep client's HTTP connections."""
        transport: AiohttpTransport = self.client.transport
        await transport.aclose()

    def _handler(self, mapping: TypeMapping) -> Handler:
        async def handle(request: etree._Element, context: RequestContext) -> Answer:
            return await self.find(mapping, request, context)

        handle.__name__ = f"handle_{mapping.operation}"
        return handle

    async def find(
        self, mapping: TypeMapping, request: etree._Element, context: RequestContext
    ) -> Answer:
        query = mapping.query(request, str(context.message_id))
        operation = getattr(self._service, query.operation)
        with agency_call(query.operation):
            try:
                answer = await operation(**query.arguments)
            except zeep.exceptions.Fault as fault:
                return _fault_answer(query.operation, fault)
            except zeep.exceptions.TransportError as exc:
                _raise_if_malformed(query.operation, exc)
                raise
        acts = acts_of(mapping, answer)
        if not acts:
            return Reject(
                RejectionCode.NO_DATA,
                f"the civil registry has no act record matching the request ({query.operation})",
            )
        try:
            return response_content(mapping, acts)
        except UnmappableRecord as exc:
            raise AgencyError(f"{query.operation}: {exc}", operation=query.operation) from exc


def _fault_code(fault: zeep.exceptions.Fault) -> str | None:
    detail: Any = fault.detail
    if detail is None:
        return None
    code = find_text(detail, f"{{{REGISTRY_NS}}}registryFault/{{{REGISTRY_NS}}}code")
    return code if isinstance(code, str) else None


def _fault_answer(operation: str, fault: zeep.exceptions.Fault) -> Answer:
    code = _fault_code(fault)
    message = fault.message or "no message"
    if code == "INVALID_REQUEST":
        return Reject(
            RejectionCode.INVALID_REQUEST, f"the civil registry refused the request: {message}"
        )
    if code == "INTERNAL_ERROR" or (code is None and "Server" in str(fault.code)):
        raise AgencyUnavailable(
            f"{operation}: the civil registry failed: {message}", operation=operation
        ) from fault
    raise AgencyError(
        f"{operation}: SOAP Fault {code or fault.code}: {message}", operation=operation
    ) from fault


def _raise_if_malformed(operation: str, exc: zeep.exceptions.TransportError) -> None:
    """zeep reports a 200 answer it cannot parse as a TransportError; it is malformed."""
    if exc.status_code == 200:
        raise AgencyError(
            f"{operation}: malformed answer from the civil registry: {exc.message}",
            operation=operation,
        ) from exc


def build_client(
    wsdl_url: str, *, operation_timeout: float = OPERATION_TIMEOUT
) -> zeep.AsyncClient:
    """A zeep client for the registry's WSDL (fetched now), with XML hardening on.

    Proxies from the environment. The WSDL fetch follows redirects (as requests did);
    operations do not (a 3xx is the registry's error, as with the XML-over-HTTP
    agencies).
    """
    with httpx.Client(timeout=WSDL_TIMEOUT, follow_redirects=True) as wsdl_client:
        transport = AiohttpTransport(wsdl_client, timeout=operation_timeout, limit=LIMIT)
        settings = zeep.Settings(forbid_dtd=True, forbid_entities=True, forbid_external=True)
        return zeep.AsyncClient(  # type: ignore[no-untyped-call]
            wsdl_url, transport=transport, settings=settings
        )


def build_zags_adapter(
    wsdl_url: str,
    *,
    endpoint: str | None = None,
    operation_timeout: float = OPERATION_TIMEOUT,
) -> ZagsAdapter:
    """The adapter for the registry whose WSDL is at ``wsdl_url`` (e.g. ``.../zags?wsdl``).

    Builds the process's one zeep client (fetching the WSDL, so the registry's WSDL must
    be reachable). ``endpoint`` overrides the WSDL's ``soap:address``. Await
    :meth:`ZagsAdapter.aclose` on shutdown.
    """
    return ZagsAdapter(
        build_client(wsdl_url, operation_timeout=operation_timeout), endpoint=endpoint
    )
