"""A portal's service request over REST, fanned out to three agencies, as processes.

``smevbus serve`` (RabbitMQ + PostgreSQL, the aggregator pumping PORTAL's replies) +
the mock agencies + their adapters (ZAGS by SOAP pull, MVD and FNS by push): one
``child-birth-benefit`` request becomes three signed bus messages whose answers come
back into one result; every part's message has its lifecycle trace. A request with a
``callback_url`` has its final result POSTed to a real HTTP server in this process.
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import json
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from types import TracebackType
from typing import Any, Self

import httpx
import pytest

from gateway.core.catalogue import parse_catalogue
from gateway.testing.chain import Chain
from tests.integration import store_fixtures
from tests.integration.chain_fixtures import chain_of

postgres_url = store_fixtures.postgres_url
pytestmark = pytest.mark.integration

TOKEN = "portal-e2e-token"
CALLBACK_SECRET = "e2e-callback-secret"
PASSPORT_APPLICANT = (
    parse_catalogue(
        (Path(__file__).resolve().parents[2] / "config" / "services.toml").read_text("utf-8")
    )
    .get("passport-check")
    .example
)
APPLICANT = {
    "child": {
        "last_name": "Смирнова",
        "first_name": "Анна",
        "middle_name": "Сергеевна",
        "birth_date": "2019-03-14",
    },
    "parent": {
        "last_name": "Смирнова",
        "first_name": "Елена",
        "middle_name": "Викторовна",
        "birth_date": "1991-07-02",
        "passport": {"series": "7011", "number": "123456"},
    },
}


@pytest.fixture(scope="module")
def chain(
    amqp_url: str, postgres_url: str, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Chain]:
    with chain_of(
        amqp_url,
        tmp_path_factory,
        token=TOKEN,
        gateway_env={
            "SMEVBUS_CALLBACK_SECRET": CALLBACK_SECRET,
            "SMEVBUS_CALLBACK_HOSTS": "127.0.0.1",
            # The receiver listens on loopback, which callbacks reach only when listed.
            "SMEVBUS_CALLBACK_NETWORKS": "127.0.0.0/8",
        },
    ) as running:
        yield running


async def wait_final(http: httpx.AsyncClient, location: str) -> dict[str, Any]:
    """Poll the service request until it is final (bounded)."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + 90
    while loop.time() < deadline:
        view: dict[str, Any] = (await http.get(location)).raise_for_status().json()
        if view["status"] != "PENDING":
            return view
        await asyncio.sleep(0.2)  # the agencies are answering: poll, bounded
    raise AssertionError(f"{location} still PENDING after 90 s")


async def test_child_birth_benefit_is_assembled_from_three_agencies(chain: Chain) -> None:
    headers = {"Idempotency-Key": "e2e-1"}
    async with httpx.AsyncClient(
        base_url=chain.gateway.base_url,
        timeout=30,
        headers={"Authorization": f"Bearer {TOKEN}"},
    ) as http:
        body = {"service": "child-birth-benefit", "applicant": APPLICANT}
        created = await http.post("/api/v1/service-requests", json=body, headers=headers)
        assert created.status_code == 202, created.text
        again = await http.post("/api/v1/service-requests", json=body, headers=headers)
        assert again.json()["id"] == created.json()["id"]

        view = await wait_final(http, created.json()["links"]["self"])
        assert view["status"] == "COMPLETED", view
        assert view["completed_by"] == "all_answered"
        parts = {part["id"]: part for part in view["parts"]}
        assert {p["status"] for p in parts.values()} == {"ANSWERED"}
        result = view["result"]
        assert result["birth_act_number"] == "120197100000101234005"
        assert result["parent_inn"] == "710512345645"

        trace = await http.get(f"/api/v1/messages/{parts['birth-record']['message_id']}")
        states = [t["to_state"] for t in trace.json()["transitions"]]
        assert states[:3] == ["ACCEPTED", "QUEUED", "DELIVERED"]
        assert states[-1] == "RESPONSE_DELIVERED"


async def test_requests_need_a_token(chain: Chain) -> None:
    async with httpx.AsyncClient(base_url=chain.gateway.base_url, timeout=30) as http:
        refused = await http.post(
            "/api/v1/service-requests", json={"service": "passport-check", "applicant": {}}
        )
    assert refused.status_code == 401
    assert refused.headers["content-type"].startswith("application/problem+json")


# --- result callbacks -----------------------------------------------------------------


@dataclass(frozen=True)
class Posted:
    headers: dict[str, str]
    body: bytes


@dataclass
class CallbackReceiver:
    """A portal's callback endpoint: a real HTTP server on a free port, in a thread.

    Answers each POST with the next of ``statuses`` (then 200) and records it.
    """

    statuses: list[int]
    received: list[Posted] = field(default_factory=list)
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def __enter__(self) -> Self:
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("Content-Length", "0")))
                with receiver._lock:
                    receiver.received.append(Posted(dict(self.headers.items()), body))
                    status = receiver.statuses.pop(0) if receiver.statuses else 200
                self.send_response(status)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, format: str, *args: Any) -> None:
                pass

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)
        self._thread.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(timeout=10)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self._server.server_address[1]}/smevbus/results"

    def posts(self) -> list[Posted]:
        with self._lock:
            return list(self.received)


async def wait_callback_settled(http: httpx.AsyncClient, location: str) -> dict[str, Any]:
    """Poll the service request until its callback is delivered or failed (bounded)."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + 120
    while loop.time() < deadline:
        view: dict[str, Any] = (await http.get(location)).raise_for_status().json()
        if view["callback"]["state"] in ("delivered", "failed"):
            return view
        await asyncio.sleep(0.2)  # the agency answers, then the callback is retried: poll
    raise AssertionError(f"callback of {location} not settled after 120 s: {view['callback']}")


def _without_callback(view: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in view.items() if k != "callback"}


async def test_the_result_is_posted_to_the_callback_url_and_retried_after_a_500(
    chain: Chain,
) -> None:
    with CallbackReceiver(statuses=[500]) as receiver:
        async with httpx.AsyncClient(
            base_url=chain.gateway.base_url,
            timeout=30,
            headers={"Authorization": f"Bearer {TOKEN}"},
        ) as http:
            body = {
                "service": "passport-check",
                "applicant": PASSPORT_APPLICANT,
                "callback_url": receiver.url,
            }
            created = await http.post("/api/v1/service-requests", json=body)
            assert created.status_code == 202, created.text
            refused = await http.post(
                "/api/v1/service-requests",
                json={**body, "callback_url": "http://localhost:1/not-allowed"},
            )
            assert refused.status_code == 422
            assert refused.json()["context"]["field"] == "callback_url"
            itself = await http.post(  # loopback is listed, the gateway's own port is not
                "/api/v1/service-requests",
                json={**body, "callback_url": f"{chain.gateway.base_url}/ws"},
            )
            assert itself.status_code == 422
            assert "this gateway itself" in itself.json()["detail"]

            view = await wait_callback_settled(http, created.json()["links"]["self"])
            posts = receiver.posts()

    assert view["status"] != "PENDING"
    assert view["callback"]["state"] == "delivered", view["callback"]
    assert view["callback"]["attempts"] == 2
    assert view["callback"]["last_error"] == "HTTP 500"
    assert [p.headers["X-Smevbus-Attempt"] for p in posts] == ["1", "2"]
    delivered = posts[-1]
    assert delivered.headers["X-Smevbus-Service-Request"] == view["id"]
    assert delivered.headers["Content-Type"] == "application/json"
    digest = hmac.new(CALLBACK_SECRET.encode(), delivered.body, hashlib.sha256).hexdigest()
    assert delivered.headers["X-Smevbus-Signature"] == f"sha256={digest}"
    posted = json.loads(delivered.body)
    assert _without_callback(posted) == _without_callback(view)
    assert posted["callback"]["attempts"] == 2
    assert posted["callback"]["url"] == view["callback"]["url"]
