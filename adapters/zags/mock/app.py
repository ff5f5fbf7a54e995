"""The mock ZAGS registry as a FastAPI app: WSDL, SOAP endpoint, and a control plane.

Routes:

* ``GET /zags?wsdl`` and ``GET /zags?xsd=zags-registry-1.0.xsd``: the interface, with
  the endpoint and schema import rewritten to the address the client used;
* ``POST /zags``: the three searches (SOAP 1.1), answered from the seeded data set;
* ``GET /_control`` / ``POST /_control``: the knobs (JSON) and call counters;
* ``GET /_health``: 200 once serving.

A SOAP call goes: outage? -> 503, no body. Then the configured latency (reported in the
``X-Mock-Latency-Ms`` header of every answer), then the error draw (a seeded RNG; HTTP
500 + Fault ``INTERNAL_ERROR``), then ``malformed`` (200 with cut-off XML), then the
search. Outage leaves the WSDL and the control plane up, so a client can still be built
and a test can end the outage.
"""

from __future__ import annotations

import asyncio
import random
from dataclasses import asdict, dataclass
from typing import Any

from fastapi import FastAPI, Request, Response

from adapters.zags.mock.answers import MALFORMED_REPLY, fault_response, search_response
from adapters.zags.mock.config import Knobs, KnobsUpdate, MockZagsConfig
from adapters.zags.mock.dataset import Registry, build_registry
from adapters.zags.mock.queries import RegistryFault, read_request
from adapters.zags.mock.schema import ENDPOINT_PATH, XSD_FILE, served_wsdl, served_xsd
from adapters.zags.mock.search import find

SOAP_MEDIA_TYPE = "text/xml; charset=utf-8"
LATENCY_HEADER = "X-Mock-Latency-Ms"


@dataclass
class CallStats:
    calls: int = 0
    answered: int = 0
    refused: int = 0
    injected_errors: int = 0
    outage_refusals: int = 0
    malformed_replies: int = 0


class MockState:
    """The running service's knobs, error draw, counters and records."""

    def __init__(self, config: MockZagsConfig, registry: Registry | None = None) -> None:
        self.knobs = Knobs.model_validate(config.model_dump(include=set(Knobs.model_fields)))
        self.rng = random.Random(self.knobs.seed)  # noqa: S311 - a reproducible draw, no secret
        self.stats = CallStats()
        self.registry = registry or build_registry(config.data_seed, config.families)

    def update(self, update: KnobsUpdate) -> None:
        changes = update.model_dump(exclude_none=True)
        self.knobs = self.knobs.model_copy(update=changes)
        if "seed" in changes:
            self.rng = random.Random(self.knobs.seed)  # noqa: S311 - a reproducible draw, no secret

    def draw_error(self) -> bool:
        """Whether this call fails; draws only when the error rate is above zero."""
        rate = self.knobs.error_rate
        return rate > 0 and self.rng.random() < rate

    def snapshot(self) -> dict[str, Any]:
        return {
            **self.knobs.model_dump(),
            "stats": asdict(self.stats),
            "records": {
                "births": len(self.registry.births),
                "marriages": len(self.registry.marriages),
                "deaths": len(self.registry.deaths),
            },
        }


def create_mock_zags(
    config: MockZagsConfig | None = None, *, registry: Registry | None = None
) -> FastAPI:
    """A mock ZAGS registry app; ``registry`` replaces the seeded data set (for tests)."""
    state = MockState(config or MockZagsConfig(), registry)
    app = FastAPI(title="Mock ZAGS civil registry", docs_url=None, redoc_url=None)
    app.state.mock = state

    def base_url(request: Request) -> str:
        return str(request.base_url).rstrip("/")

    @app.get(ENDPOINT_PATH, response_class=Response, summary="WSDL (?wsdl) or XSD (?xsd=)")
    async def interface(request: Request) -> Response:
        params = request.query_params
        if "wsdl" in params:
            return Response(served_wsdl(base_url(request)), media_type=SOAP_MEDIA_TYPE)
        schema = served_xsd(params.get("xsd", ""))
        if schema is not None:
            return Response(schema, media_type=SOAP_MEDIA_TYPE)
        return Response(
            f"GET {ENDPOINT_PATH}?wsdl or {ENDPOINT_PATH}?xsd={XSD_FILE}\n",
            status_code=404,
            media_type="text/plain",
        )

    @app.post(ENDPOINT_PATH, response_class=Response, summary="SOAP 1.1 registry searches")
    async def soap(request: Request) -> Response:
        body = await request.body()
        knobs, stats = state.knobs, state.stats
        stats.calls += 1
        if knobs.outage:
            stats.outage_refusals += 1
            return Response(status_code=503, headers={"Retry-After": "5"})
        headers = {LATENCY_HEADER: str(knobs.latency_ms)}
        if knobs.latency_ms:
            await asyncio.sleep(knobs.latency_ms / 1000)
        if state.draw_error():
            stats.injected_errors += 1
            fault = RegistryFault("INTERNAL_ERROR", "registry database unavailable (injected)")
            return _soap(fault_response(fault), 500, headers)
        if knobs.malformed:
            stats.malformed_replies += 1
            return _soap(MALFORMED_REPLY, 200, headers)
        try:
            call = read_request(body)
        except RegistryFault as fault:
            stats.refused += 1
            return _soap(fault_response(fault), 500, headers)
        stats.answered += 1
        acts = find(state.registry, call.query)
        return _soap(search_response(call.operation, call.request_id, acts), 200, headers)

    @app.get("/_control", summary="Knobs and call counters")
    async def control_state() -> dict[str, Any]:
        return state.snapshot()

    @app.post("/_control", summary="Change knobs on the running service")
    async def control_update(update: KnobsUpdate) -> dict[str, Any]:
        state.update(update)
        return state.snapshot()

    @app.get("/_health", summary="Liveness: 200 once serving")
    async def health() -> dict[str, str]:
        return {"status": "ok"}

    return app


def _soap(content: bytes, status: int, headers: dict[str, str]) -> Response:
    return Response(content, status_code=status, media_type=SOAP_MEDIA_TYPE, headers=headers)
