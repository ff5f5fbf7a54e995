"""The REST API (/api/v1) against a fake aggregator and an in-memory journal."""

from __future__ import annotations

import hashlib
import uuid
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pytest
from fastapi import FastAPI

from gateway.aggregator import ApplicantDataInvalid
from gateway.aggregator.callback_guard import CallbackGuard
from gateway.api.auth import TokenAuth
from gateway.api.rest import rest_router
from gateway.config import Settings
from gateway.core.aggregation import PartState, ServiceRequestState, on_answer, on_cancel
from gateway.core.envelope import MessageKind
from gateway.core.errors import IdempotencyKeyReused, NotFound
from gateway.core.idempotency import request_digest
from gateway.core.lifecycle import MessageState
from gateway.store import Journal, open_journal
from gateway.store.callbacks import Callback, CallbackState
from gateway.store.records import NewMessage
from gateway.store.service_requests import ServiceRequestPage, ServiceRequestRecord
from gateway.testing.bus import pump
from tests.unit.callback_fixtures import public_guard
from tests.unit.test_aggregator_service import APPLICANT as REAL_APPLICANT
from tests.unit.test_aggregator_service import World, world

T0 = datetime(2024, 5, 1, 12, 0, tzinfo=UTC)
PORTAL, OTHER = "PORTAL", "OTHER_PORTAL"
TOKENS = {"portal-token": PORTAL, "other-token": OTHER, "banned-token": "BANNED"}
__all__ = ["world"]  # the real-aggregator fixture, re-used
AUTH = {"Authorization": "Bearer portal-token"}
OTHER_AUTH = {"Authorization": "Bearer other-token"}


class FakeAggregator:
    """The Aggregator interface over a dict; `passport-check` needs applicant.passport."""

    def __init__(self) -> None:
        self.records: dict[str, ServiceRequestRecord] = {}
        self.keys: dict[tuple[str, str], str] = {}
        self.calls: list[dict[str, Any]] = []
        self.n = 0

    async def submit(
        self,
        *,
        service: str,
        applicant: dict[str, Any],
        participant: str,
        idempotency_key: str | None = None,
        deadline_s: float | None = None,
        callback_url: str | None = None,
    ) -> tuple[ServiceRequestRecord, bool]:
        self.calls.append(
            {"service": service, "deadline_s": deadline_s, "callback_url": callback_url}
        )
        if service not in ("passport-check", "child-birth-benefit"):
            raise NotFound(f"no service {service}", service=service)
        if not isinstance(applicant.get("passport"), dict) or "number" not in applicant["passport"]:
            raise ApplicantDataInvalid(
                "applicant field 'passport.number' is required", field="passport.number"
            )
        digest = request_digest(
            service=service, applicant=applicant, callback_url=callback_url, deadline_s=deadline_s
        )
        if idempotency_key is not None and (participant, idempotency_key) in self.keys:
            record = self.records[self.keys[(participant, idempotency_key)]]
            if record.request_digest != digest:
                raise IdempotencyKeyReused(
                    "another body", field="Idempotency-Key", id=str(record.id)
                )
            return record, False
        self.n += 1
        created = T0 + timedelta(seconds=self.n)
        state = ServiceRequestState(
            id=uuid.uuid4(),
            service=service,
            created_at=created,
            deadline_at=created + timedelta(seconds=deadline_s or 60),
            parts=(
                PartState(
                    id="passport",
                    message_type="urn:mvd:passport",
                    required=True,
                    deadline_at=created + timedelta(seconds=30),
                    message_id=uuid.uuid1(),
                    sent_at=created,
                ),
            ),
        )
        callback = None if callback_url is None else Callback(callback_url, CallbackState.PENDING)
        record = self._record(state, participant, idempotency_key, callback, digest)
        if idempotency_key is not None:
            self.keys[(participant, idempotency_key)] = str(state.id)
        return record, True

    def _record(
        self,
        state: ServiceRequestState,
        participant: str,
        key: str | None,
        callback: Callback | None = None,
        digest: str | None = None,
    ) -> ServiceRequestRecord:
        record = ServiceRequestRecord(
            state=state,
            participant=participant,
            idempotency_key=key,
            next_deadline=None if state.final else state.deadline_at,
            created_at=state.created_at,
            updated_at=state.created_at,
            version=1,
            callback=callback,
            request_digest=digest,
        )
        self.records[str(state.id)] = record
        return record

    async def get(self, id: str) -> ServiceRequestRecord:
        try:
            return self.records[str(uuid.UUID(id))]
        except KeyError:
            raise NotFound(f"no service request {id}") from None

    async def find(self, **filters: Any) -> ServiceRequestPage:
        items = sorted(self.records.values(), key=lambda r: (r.created_at, str(r.id)))
        for name in ("participant", "service", "status"):
            if filters.get(name) is not None:
                items = [r for r in items if getattr(r, name) == filters[name]]
        if filters.get("since") is not None:
            items = [r for r in items if r.created_at >= filters["since"]]
        if filters.get("after") is not None:
            ids = [str(r.id) for r in items]
            if filters["after"] not in ids:
                raise ValueError(f"malformed page cursor {filters['after']!r}")
            items = items[ids.index(filters["after"]) + 1 :]
        limit = filters.get("limit", 100)
        page = tuple(items[:limit])
        return ServiceRequestPage(page, str(page[-1].id) if len(items) > limit else None)

    async def cancel(self, id: str, participant: str) -> ServiceRequestRecord:
        record = await self.get(id)
        if record.participant != participant:
            raise NotFound(f"no service request {id}")
        outcome = on_cancel(record.state, T0 + timedelta(minutes=1))
        return self._record(outcome.state, participant, record.idempotency_key)

    def answer(self, id: str, data: dict[str, Any]) -> None:
        record = self.records[id]
        outcome = on_answer(record.state, "passport", data, T0 + timedelta(seconds=10))
        self._record(outcome.state, record.participant, record.idempotency_key, record.callback)


@pytest.fixture
async def journal() -> AsyncIterator[Journal]:
    async with open_journal("sqlite://") as store:
        await store.migrate()
        yield store


@pytest.fixture
def aggregator() -> FakeAggregator:
    return FakeAggregator()


def _client(
    aggregator: FakeAggregator, journal: Journal, guard: CallbackGuard | None = None
) -> httpx.AsyncClient:
    """The REST API; callback URLs are checked by ``guard`` (default: the test portals'
    names resolve to public addresses, without DNS)."""
    app = FastAPI()
    auth = TokenAuth(TOKENS, allowed=lambda p: p != "BANNED")
    app.include_router(
        rest_router(
            auth,
            aggregator_provider=lambda _: aggregator,
            journal_provider=lambda _: journal,
            callback_guard=guard or public_guard(),
        )
    )
    return httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://test")


@pytest.fixture
async def client(aggregator: FakeAggregator, journal: Journal) -> AsyncIterator[httpx.AsyncClient]:
    async with _client(aggregator, journal) as c:
        yield c


BODY = {"service": "passport-check", "applicant": {"passport": {"number": "4509 123456"}}}


def assert_problem(resp: httpx.Response, status: int, code: str) -> dict[str, Any]:
    assert resp.status_code == status, resp.text
    assert resp.headers["content-type"].startswith("application/problem+json")
    body: dict[str, Any] = resp.json()
    assert body["status"] == status
    assert body["code"] == code
    assert body["type"] == f"urn:smevbus:error:{code}"
    return body


# --- auth -------------------------------------------------------------------------


async def test_no_token_is_401_problem(client: httpx.AsyncClient) -> None:
    resp = await client.get("/api/v1/service-requests")
    assert_problem(resp, 401, "unauthenticated")
    assert resp.headers["www-authenticate"] == "Bearer"


async def test_unknown_token_and_wrong_scheme_are_401(client: httpx.AsyncClient) -> None:
    resp = await client.get("/api/v1/service-requests", headers={"Authorization": "Bearer nope"})
    assert_problem(resp, 401, "unauthenticated")
    resp = await client.get("/api/v1/service-requests", headers={"Authorization": "Basic eDp5"})
    assert_problem(resp, 401, "unauthenticated")


async def test_participant_not_allowed_is_403(client: httpx.AsyncClient) -> None:
    resp = await client.post(
        "/api/v1/service-requests", json=BODY, headers={"Authorization": "Bearer banned-token"}
    )
    assert_problem(resp, 403, "access_denied")


def test_token_auth_maps_tokens_and_refuses_empty_ones() -> None:
    auth = TokenAuth({"a": "A", "b": "B"})
    assert auth.participant_for("b") == "B"
    with pytest.raises(ValueError, match="non-empty"):
        TokenAuth({"": "A"})


def test_settings_parse_api_tokens_from_env(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SMEVBUS_API_TOKENS", '{"t0k3n": "PORTAL"}')
    settings = Settings()
    assert settings.api_tokens == {"t0k3n": "PORTAL"}
    assert "t0k3n" not in repr(settings)


# --- submit -----------------------------------------------------------------------


async def test_submit_returns_202_with_id_and_links(
    client: httpx.AsyncClient, aggregator: FakeAggregator
) -> None:
    resp = await client.post("/api/v1/service-requests", json=BODY, headers=AUTH)
    assert resp.status_code == 202, resp.text
    body = resp.json()
    assert body["status"] == "PENDING"
    assert body["links"]["self"] == f"http://test/api/v1/service-requests/{body['id']}"
    assert resp.headers["location"] == body["links"]["self"]
    assert aggregator.records[body["id"]].participant == PORTAL


async def test_idempotency_key_returns_the_same_request_with_200(
    client: httpx.AsyncClient, aggregator: FakeAggregator
) -> None:
    headers = {**AUTH, "Idempotency-Key": "k-1"}
    first = await client.post("/api/v1/service-requests", json=BODY, headers=headers)
    again = await client.post("/api/v1/service-requests", json=BODY, headers=headers)
    assert (first.status_code, again.status_code) == (202, 200)
    assert first.json() == again.json()
    assert len(aggregator.records) == 1
    # another participant's key space is its own
    other = await client.post(
        "/api/v1/service-requests", json=BODY, headers={**OTHER_AUTH, "Idempotency-Key": "k-1"}
    )
    assert other.status_code == 202
    assert other.json()["id"] != first.json()["id"]


async def test_deadline_is_passed_to_the_aggregator(
    client: httpx.AsyncClient, aggregator: FakeAggregator
) -> None:
    resp = await client.post(
        "/api/v1/service-requests", json={**BODY, "deadline_s": 5}, headers=AUTH
    )
    assert resp.status_code == 202
    assert aggregator.calls[-1]["deadline_s"] == 5


async def test_unknown_service_is_404_problem(client: httpx.AsyncClient) -> None:
    resp = await client.post(
        "/api/v1/service-requests", json={**BODY, "service": "no-such"}, headers=AUTH
    )
    assert_problem(resp, 404, "not_found")


async def test_applicant_data_invalid_names_the_field(client: httpx.AsyncClient) -> None:
    resp = await client.post(
        "/api/v1/service-requests",
        json={"service": "passport-check", "applicant": {"passport": {}}},
        headers=AUTH,
    )
    body = assert_problem(resp, 422, "schema_violation")
    assert body["context"]["field"] == "passport.number"
    assert "passport.number" in body["detail"]


@pytest.mark.parametrize(
    ("payload", "field"),
    [
        ({"applicant": {}}, "body.service"),
        ({"service": "passport-check", "applicant": []}, "body.applicant"),
        ({**BODY, "deadline_s": -1}, "body.deadline_s"),
        ({**BODY, "extra": 1}, "body.extra"),
    ],
)
async def test_request_validation_is_problem_naming_the_field(
    client: httpx.AsyncClient, payload: dict[str, Any], field: str
) -> None:
    resp = await client.post("/api/v1/service-requests", json=payload, headers=AUTH)
    body = assert_problem(resp, 422, "schema_violation")
    assert body["context"]["field"] == field
    assert field in body["detail"]


async def test_callback_url_is_passed_on_and_shown_on_the_request(
    client: httpx.AsyncClient, aggregator: FakeAggregator
) -> None:
    url = "https://portal.example/smevbus/results?tenant=71"
    resp = await client.post(
        "/api/v1/service-requests", json={**BODY, "callback_url": url}, headers=AUTH
    )
    assert resp.status_code == 202, resp.text
    assert aggregator.calls[-1]["callback_url"] == url
    view = (await client.get(resp.json()["links"]["self"], headers=AUTH)).json()
    assert view["callback"] == {
        "url": url,
        "state": "pending",
        "attempts": 0,
        "next_attempt_at": None,
        "last_error": None,
        "delivered_at": None,
    }
    plain = await client.post("/api/v1/service-requests", json=BODY, headers=AUTH)
    assert (await client.get(plain.json()["links"]["self"], headers=AUTH)).json()[
        "callback"
    ] is None


@pytest.mark.parametrize(
    ("url", "says"),
    [
        ("ftp://portal.example/cb", "absolute http or https URL"),
        ("/relative/cb", "absolute http or https URL"),
        ("portal.example/cb", "absolute http or https URL"),
        ("https:///no-host", "absolute http or https URL"),
        ("javascript:alert(1)", "absolute http or https URL"),
        ("https://user:secret@portal.example/cb", "user name or password"),
        ("https://portal.example:99999/cb", "port"),
        ("https://portal.example/c b", "spaces or control characters"),
        (" https://portal.example/cb", "spaces or control characters"),
        ("https://portal.example/" + "x" * 2048, "at most 2048"),
    ],
)
async def test_bad_callback_url_is_422_naming_the_field(
    client: httpx.AsyncClient, aggregator: FakeAggregator, url: str, says: str
) -> None:
    resp = await client.post(
        "/api/v1/service-requests", json={**BODY, "callback_url": url}, headers=AUTH
    )
    body = assert_problem(resp, 422, "schema_violation")
    assert body["context"]["field"] == "callback_url"
    assert says in body["detail"]
    assert "secret" not in body["detail"]  # credentials are never echoed
    assert aggregator.calls == []


async def test_callback_hosts_allow_list_refuses_other_hosts(
    aggregator: FakeAggregator, journal: Journal
) -> None:
    guard = public_guard(allowed_hosts=("portal.example", "*.gov71.example"))
    async with _client(aggregator, journal, guard) as client:
        for url in ("https://PORTAL.example/cb", "http://mfc.gov71.example:8443/cb"):
            resp = await client.post(
                "/api/v1/service-requests", json={**BODY, "callback_url": url}, headers=AUTH
            )
            assert resp.status_code == 202, (url, resp.text)
        for url in (
            "http://169.254.169.254/latest/meta-data",
            "https://gov71.example/cb",  # *.gov71.example is its subdomains only
            "https://portal.example.evil.example/cb",
        ):
            resp = await client.post(
                "/api/v1/service-requests", json={**BODY, "callback_url": url}, headers=AUTH
            )
            body = assert_problem(resp, 422, "schema_violation")
            assert body["context"]["field"] == "callback_url"
            assert "SMEVBUS_CALLBACK_HOSTS" in body["detail"]
    assert [c["callback_url"] for c in aggregator.calls] == [
        "https://PORTAL.example/cb",
        "http://mfc.gov71.example:8443/cb",
    ]


def test_settings_parse_callback_hosts_as_a_list_or_json(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SMEVBUS_CALLBACK_HOSTS", "portal.example, *.gov71.example")
    assert Settings().callback_hosts == ("portal.example", "*.gov71.example")
    monkeypatch.setenv("SMEVBUS_CALLBACK_HOSTS", '["portal.example"]')
    assert Settings().callback_hosts == ("portal.example",)
    monkeypatch.setenv("SMEVBUS_CALLBACK_SECRET", "k3y")
    assert "k3y" not in repr(Settings())


async def test_malformed_json_is_400(client: httpx.AsyncClient) -> None:
    resp = await client.post(
        "/api/v1/service-requests",
        content=b"{not json",
        headers={**AUTH, "Content-Type": "application/json"},
    )
    assert_problem(resp, 400, "invalid_content")


async def test_oversized_idempotency_key_is_422(client: httpx.AsyncClient) -> None:
    resp = await client.post(
        "/api/v1/service-requests", json=BODY, headers={**AUTH, "Idempotency-Key": "k" * 256}
    )
    body = assert_problem(resp, 422, "schema_violation")
    assert body["context"]["field"] == "header.Idempotency-Key"


# --- read, list, cancel ------------------------------------------------------------


async def _submit(client: httpx.AsyncClient, headers: dict[str, str] = AUTH) -> str:
    resp = await client.post("/api/v1/service-requests", json=BODY, headers=headers)
    assert resp.status_code == 202, resp.text
    rid: str = resp.json()["id"]
    return rid


async def test_get_shows_parts_and_result(
    client: httpx.AsyncClient, aggregator: FakeAggregator
) -> None:
    rid = await _submit(client)
    pending = (await client.get(f"/api/v1/service-requests/{rid}", headers=AUTH)).json()
    assert pending["status"] == "PENDING"
    assert pending["completed_by"] is None
    [part] = pending["parts"]
    assert part["id"] == "passport"
    assert part["message_type"] == "urn:mvd:passport"
    assert part["required"] is True
    assert part["status"] == "PENDING"
    assert uuid.UUID(part["message_id"])
    assert part["timings"]["sent_at"] == "2024-05-01T12:00:01Z"

    aggregator.answer(rid, {"valid": "true"})
    done = (await client.get(f"/api/v1/service-requests/{rid}", headers=AUTH)).json()
    assert done["status"] == "COMPLETED"
    assert done["completed_by"] == "all_answered"
    assert done["parts"][0]["status"] == "ANSWERED"
    assert done["parts"][0]["data"] == {"valid": "true"}
    assert done["parts"][0]["timings"]["replied_at"] is not None
    assert done["links"]["self"].endswith(rid)


async def test_get_of_another_participants_request_is_404(client: httpx.AsyncClient) -> None:
    rid = await _submit(client)
    resp = await client.get(f"/api/v1/service-requests/{rid}", headers=OTHER_AUTH)
    assert_problem(resp, 404, "not_found")
    resp = await client.get(f"/api/v1/service-requests/{uuid.uuid4()}", headers=AUTH)
    assert_problem(resp, 404, "not_found")


async def test_get_with_malformed_id_is_422_problem(client: httpx.AsyncClient) -> None:
    resp = await client.get("/api/v1/service-requests/not-a-uuid", headers=AUTH)
    assert assert_problem(resp, 422, "schema_violation")["context"]["field"] == "path.request_id"


async def test_list_is_paged_with_a_next_link_and_only_own_requests(
    client: httpx.AsyncClient,
) -> None:
    mine = [await _submit(client) for _ in range(3)]
    await _submit(client, OTHER_AUTH)
    first = (await client.get("/api/v1/service-requests?limit=2", headers=AUTH)).json()
    assert [i["id"] for i in first["items"]] == mine[:2]
    assert first["links"]["next"] is not None
    second = (await client.get(first["links"]["next"], headers=AUTH)).json()
    assert [i["id"] for i in second["items"]] == mine[2:]
    assert second["links"]["next"] is None
    assert second["next_cursor"] is None


async def test_list_filters_by_status_service_and_since(
    client: httpx.AsyncClient, aggregator: FakeAggregator
) -> None:
    a, b = await _submit(client), await _submit(client)
    aggregator.answer(a, {"valid": "true"})
    done = (await client.get("/api/v1/service-requests?status=COMPLETED", headers=AUTH)).json()
    assert [i["id"] for i in done["items"]] == [a]
    none = await client.get("/api/v1/service-requests?service=child-birth-benefit", headers=AUTH)
    assert none.json()["items"] == []
    since = await client.get(
        "/api/v1/service-requests", params={"since": "2024-05-01T12:00:02Z"}, headers=AUTH
    )
    assert [i["id"] for i in since.json()["items"]] == [b]


@pytest.mark.parametrize(
    ("query", "status", "code"),
    [
        ("status=BOGUS", 422, "schema_violation"),
        ("limit=0", 422, "schema_violation"),
        ("limit=100000", 422, "schema_violation"),
        ("since=2024-05-01T12:00:00", 422, "schema_violation"),  # naive: no zone
        ("after=garbage", 400, "invalid_content"),
    ],
)
async def test_list_rejects_bad_parameters(
    client: httpx.AsyncClient, query: str, status: int, code: str
) -> None:
    await _submit(client)
    resp = await client.get(f"/api/v1/service-requests?{query}", headers=AUTH)
    assert_problem(resp, status, code)


async def test_cancel_pending_then_409_once_final(client: httpx.AsyncClient) -> None:
    rid = await _submit(client)
    resp = await client.delete(f"/api/v1/service-requests/{rid}", headers=AUTH)
    assert resp.status_code == 200, resp.text
    assert resp.json()["status"] == "CANCELLED"
    assert resp.json()["completed_by"] == "cancelled"
    again = await client.delete(f"/api/v1/service-requests/{rid}", headers=AUTH)
    assert assert_problem(again, 409, "conflict")["context"]["status"] == "CANCELLED"


async def test_cancel_of_another_participants_request_is_404(client: httpx.AsyncClient) -> None:
    rid = await _submit(client)
    resp = await client.delete(f"/api/v1/service-requests/{rid}", headers=OTHER_AUTH)
    assert_problem(resp, 404, "not_found")


async def test_a_bug_in_the_aggregator_is_an_opaque_500_problem(
    client: httpx.AsyncClient, aggregator: FakeAggregator, monkeypatch: pytest.MonkeyPatch
) -> None:
    async def boom(id: str) -> ServiceRequestRecord:
        raise RuntimeError("secret internals")

    monkeypatch.setattr(aggregator, "get", boom)
    resp = await client.get(f"/api/v1/service-requests/{uuid.uuid4()}", headers=AUTH)
    body = assert_problem(resp, 500, "internal")
    assert "secret" not in resp.text
    assert body["transient"] is True


# --- message trace ----------------------------------------------------------------


async def _journal_exchange(journal: Journal) -> tuple[str, str]:
    request_id, response_id = str(uuid.uuid1()), str(uuid.uuid1())
    sha = hashlib.sha256(b"x").hexdigest()
    await journal.accept(
        NewMessage(
            request_id, MessageKind.REQUEST, PORTAL, "MVD", "urn:mvd:passport", sha, b"<x/>"
        ),
        at=T0,
        actor=PORTAL,
    )
    await journal.transition(request_id, MessageState.QUEUED, at=T0 + timedelta(seconds=1))
    await journal.accept(
        NewMessage(
            response_id,
            MessageKind.RESPONSE,
            "MVD",
            PORTAL,
            "urn:mvd:passport",
            sha,
            b"<x/>",
            in_reply_to=request_id,
        ),
        at=T0 + timedelta(seconds=2),
    )
    return request_id, response_id


async def test_trace_of_a_message_the_caller_sent(
    client: httpx.AsyncClient, journal: Journal
) -> None:
    request_id, response_id = await _journal_exchange(journal)
    resp = await client.get(f"/api/v1/messages/{request_id}", headers=AUTH)
    assert resp.status_code == 200, resp.text
    trace = resp.json()
    assert trace["message_id"] == request_id
    assert (trace["sender"], trace["recipient"], trace["kind"]) == (PORTAL, "MVD", "request")
    assert trace["state"] == "QUEUED"
    assert [(t["from_state"], t["to_state"]) for t in trace["transitions"]] == [
        (None, "ACCEPTED"),
        ("ACCEPTED", "QUEUED"),
    ]
    assert trace["transitions"][0]["actor"] == PORTAL
    assert trace["responses"] == [response_id]
    # the caller received the response: it may trace that one too (any id spelling)
    resp = await client.get(f"/api/v1/messages/{response_id.upper()}", headers=AUTH)
    assert resp.json()["in_reply_to"] == request_id


async def test_trace_of_someone_elses_or_unknown_message_is_404(
    client: httpx.AsyncClient, journal: Journal
) -> None:
    request_id, _ = await _journal_exchange(journal)
    assert_problem(
        await client.get(f"/api/v1/messages/{request_id}", headers=OTHER_AUTH), 404, "not_found"
    )
    assert_problem(
        await client.get(f"/api/v1/messages/{uuid.uuid1()}", headers=AUTH), 404, "not_found"
    )
    assert_problem(
        await client.get("/api/v1/messages/not-a-uuid", headers=AUTH), 400, "invalid_content"
    )


# --- OpenAPI ----------------------------------------------------------------------


async def test_openapi_documents_the_endpoints(client: httpx.AsyncClient) -> None:
    spec = (await client.get("/openapi.json")).json()
    paths = spec["paths"]
    assert set(paths["/api/v1/service-requests"]) == {"get", "post"}
    assert set(paths["/api/v1/service-requests/{request_id}"]) == {"get", "delete"}
    assert "get" in paths["/api/v1/messages/{message_id}"]
    post = paths["/api/v1/service-requests"]["post"]
    assert {"200", "202", "403", "404", "413", "422"} <= set(post["responses"])
    assert "application/problem+json" in post["responses"]["422"]["content"]
    assert "idempotency_key_reused" in post["responses"]["422"]["description"]
    assert "message_too_large" in post["responses"]["413"]["description"]
    assert "may not request" in post["responses"]["403"]["description"]
    assert "idempotency_key_reused" in post["description"]
    assert any(p["name"] == "Idempotency-Key" for p in post["parameters"])
    assert "bearerToken" in spec["components"]["securitySchemes"]
    assert "SubmitServiceRequest" in spec["components"]["schemas"]
    callback = spec["components"]["schemas"]["CallbackView"]
    assert set(callback["properties"]) == {
        "url",
        "state",
        "attempts",
        "next_attempt_at",
        "last_error",
        "delivered_at",
    }
    assert all(p.get("description") for p in callback["properties"].values())
    submit = spec["components"]["schemas"]["SubmitServiceRequest"]["properties"]
    assert "X-Smevbus-Signature" in submit["callback_url"]["description"]


# --- with the real Aggregator -------------------------------------------------------


async def test_real_aggregator_end_to_end(world: World) -> None:
    """Submit over REST, the agencies answer on the bus, the result and traces read back."""
    app = FastAPI()
    app.include_router(
        rest_router(
            TokenAuth(TOKENS),
            aggregator_provider=lambda _: world.agg,
            journal_provider=lambda _: world.bus.journal,
        )
    )
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://test") as c:
        body = {"service": "child-birth-benefit", "applicant": REAL_APPLICANT}
        headers = {**AUTH, "Idempotency-Key": "e2e"}
        resp = await c.post("/api/v1/service-requests", json=body, headers=headers)
        assert resp.status_code == 202, resp.text
        rid = resp.json()["id"]
        again = await c.post("/api/v1/service-requests", json=body, headers=headers)
        assert (again.status_code, again.json()["id"]) == (200, rid)

        bad = await c.post(
            "/api/v1/service-requests",
            json={"service": "child-birth-benefit", "applicant": {}},
            headers=AUTH,
        )
        assert assert_problem(bad, 422, "schema_violation")["context"]["field"]
        unknown = await c.post(
            "/api/v1/service-requests", json={**body, "service": "no-such"}, headers=AUTH
        )
        assert_problem(unknown, 404, "not_found")

        await world.answer_all()
        assert await pump(world.bus, world.agg) == 3
        done = (await c.get(f"/api/v1/service-requests/{rid}", headers=AUTH)).json()
        assert done["status"] == "COMPLETED"
        assert done["completed_by"] == "all_answered"
        assert {p["status"] for p in done["parts"]} == {"ANSWERED"}
        assert done["result"]["parent_inn"] is not None

        message_id = done["parts"][0]["message_id"]
        trace = (await c.get(f"/api/v1/messages/{message_id}", headers=AUTH)).json()
        assert trace["sender"] == PORTAL
        assert trace["transitions"][0]["to_state"] == "ACCEPTED"
        assert len(trace["responses"]) == 1
        hidden = await c.get(f"/api/v1/messages/{message_id}", headers=OTHER_AUTH)
        assert_problem(hidden, 404, "not_found")

        final = await c.delete(f"/api/v1/service-requests/{rid}", headers=AUTH)
        assert_problem(final, 409, "conflict")
