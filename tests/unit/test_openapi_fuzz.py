"""Schemathesis against the gateway's own OpenAPI spec (``/openapi.json``): no 5xx, and
every response conforms to the schema.

The app under test is the real one, :func:`gateway.api.app.create_app`, on a real
:class:`~gateway.router.router.Router` (memory transport, in-memory SQLite, the test PKI
of :mod:`gateway.testing.bus`) and a real :class:`~gateway.aggregator.Aggregator`;
the portal authenticates with an API token sent as ``Authorization: Bearer``. One
``child-birth-benefit`` request is seeded and fully answered (with a result callback,
now due), and one is left pending, so list responses carry real parts, data, results
and a callback.

Fuzzed: every ``/api/v1`` operation, ``/health``, ``/ready`` and ``/ws/xsd/{name}``.
Not fuzzed: ``/ws`` itself (``POST`` takes a SOAP envelope, ``GET`` serves the WSDL; the
spec declares no body schema for either); the SOAP endpoint has its own bad-input tests.

Schemathesis runs ASGI apps on one event-loop thread and starts an app's lifespan once,
so :class:`GatewayUnderTest` opens the bus in its lifespan: everything the app touches
lives on the loop that serves it. Bounded and deterministic for CI: 25 examples per
operation, derandomized, no deadline.
"""

from __future__ import annotations

from typing import Any

import hypothesis
import schemathesis
from fastapi import FastAPI
from schemathesis.checks import not_a_server_error
from schemathesis.specs.openapi.checks import response_schema_conformance

from gateway.api.app import create_app
from gateway.config import Settings
from gateway.testing.bus import Bus, open_bus, pump
from tests.unit.callback_fixtures import public_guard
from tests.unit.test_aggregator_service import APPLICANT, PORTAL, SERVICE, World

TOKEN = "fuzz-portal-token"
AUTH = {"Authorization": f"Bearer {TOKEN}"}
CHECKS = [not_a_server_error, response_schema_conformance]

Message = dict[str, Any]


class GatewayUnderTest:
    """ASGI wrapper: builds the real app on a fresh bus at lifespan startup."""

    def __init__(self) -> None:
        self.app: FastAPI | None = None
        self.world: World | None = None
        #: Seeded: a COMPLETED and a PENDING service request, and one bus message.
        self.completed = self.pending = self.message_id = ""

    async def __call__(self, scope: Message, receive: Any, send: Any) -> None:
        if scope["type"] == "lifespan":
            await self._lifespan(receive, send)
            return
        assert self.app is not None, "the lifespan was not started"
        await self.app(scope, receive, send)

    async def _lifespan(self, receive: Any, send: Any) -> None:
        while True:
            message = await receive()
            if message["type"] == "lifespan.startup":
                try:
                    await self._open()
                except Exception as exc:
                    await send({"type": "lifespan.startup.failed", "message": repr(exc)})
                    return
                await send({"type": "lifespan.startup.complete"})
            elif message["type"] == "lifespan.shutdown":
                await self._close()
                await send({"type": "lifespan.shutdown.complete"})
                return

    async def _open(self) -> None:
        bus: Bus = await open_bus(guard=public_guard())
        agg = bus.aggregator
        world = World(bus, agg.store, agg)
        # One answered (COMPLETED, with data and a result) and one PENDING request.
        done, _ = await agg.submit(
            service=SERVICE,
            applicant=APPLICANT,
            participant=PORTAL,
            callback_url="https://portal.example/smevbus/results",  # its view: a due callback
        )
        await world.answer_all()
        await pump(bus, agg)
        pending, _ = await agg.submit(service=SERVICE, applicant=APPLICANT, participant=PORTAL)
        self.completed, self.pending = str(done.id), str(pending.id)
        self.message_id = str(done.state.parts[0].message_id)
        self.world = world
        self.app = create_app(Settings(api_tokens={TOKEN: PORTAL}), bus.root)

    async def _close(self) -> None:
        if self.world is not None:
            await self.world.bus.close()


gateway = GatewayUnderTest()
schema = schemathesis.openapi.from_asgi("/openapi.json", gateway).exclude(path="/ws")


@schema.parametrize()
@hypothesis.settings(
    max_examples=25,
    deadline=None,
    derandomize=True,
    database=None,
    suppress_health_check=list(hypothesis.HealthCheck),
)
def test_api_conforms_to_its_openapi_spec(case: schemathesis.Case) -> None:
    case.call_and_validate(headers=AUTH, checks=CHECKS)


def _validated(method: str, path: str, **parameters: Any) -> int:
    case = schema[path][method].Case(path_parameters=parameters)
    response = case.call_and_validate(headers=AUTH, checks=CHECKS)
    return response.status_code


def test_seeded_resources_conform_to_the_spec() -> None:
    """The success shapes fuzzing cannot reach by guessing ids: a finished and a
    pending request, a message trace, a cancel and a refused cancel."""
    # Schemathesis (re)starts the app's lifespan on a call: seed ids are read after one.
    assert _validated("GET", "/health") == 200
    requests = "/api/v1/service-requests/{request_id}"
    assert _validated("GET", requests, request_id=gateway.completed) == 200
    assert _validated("GET", requests, request_id=gateway.pending) == 200
    assert _validated("GET", "/api/v1/messages/{message_id}", message_id=gateway.message_id) == 200
    assert _validated("DELETE", requests, request_id=gateway.completed) == 409
    assert _validated("DELETE", requests, request_id=gateway.pending) == 200


def test_a_body_that_is_not_utf8_is_a_client_error() -> None:
    """Found by schemathesis: FastAPI's HTTPException(400) used to become a 500."""
    case = schema["/api/v1/service-requests"]["POST"].Case(body="", media_type="application/json")
    response = case.call(headers={**AUTH, "Content-Type": "application/json"}, data=b"\xff")
    assert response.status_code == 400
    assert response.json()["code"] == "invalid_content"
