"""The REST API (``/api/v1``) against hostile input (issue 11), on SQLite and PostgreSQL.

The real app (:func:`gateway.api.app.create_app`) on a real router and aggregator whose
journal and service requests live on the parametrized ``backend``:

* every string a client can send (body fields, applicant values and keys, query, path
  and header values) holding a character XML 1.0 cannot carry is a ``422`` naming it,
  and nothing is stored or sent.
"""

from __future__ import annotations

import base64
import copy
import json
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any
from urllib.parse import quote

import httpx
import pytest
from sqlalchemy import func, select

from gateway.api.app import create_app
from gateway.config import Settings
from gateway.store import Journal
from gateway.store.schema import messages, service_requests
from gateway.testing.bus import Bus, open_bus
from gateway.transport.base import Direction
from tests.integration import store_fixtures
from tests.integration.store_fixtures import Backend
from tests.unit.callback_fixtures import public_guard
from tests.unit.test_aggregator_service import APPLICANT, CATALOGUE, PORTAL, SERVICE

backend = store_fixtures.backend
postgres_url = store_fixtures.postgres_url

TOKEN = "portal-hardening-token"
PROVIDER_TOKEN = "zags-hardening-token"
AUTH = {"Authorization": f"Bearer {TOKEN}"}
REQUESTS = "/api/v1/service-requests"
#: Characters XML 1.0 cannot carry: NUL, another C0 control, a non-character, a lone
#: surrogate (the last only through JSON: a URL or a header cannot carry it).
BAD = ("\x00", "\x01", "\ufffe", "\ud800")
BAD_IN_URL = BAD[:3]
BAD_IN_HEADER = BAD[:2]


@dataclass
class Api:
    http: httpx.AsyncClient
    bus: Bus
    journal: Journal
    backend: Backend

    async def rows(self) -> tuple[int, int]:
        """(service requests, journaled messages) stored so far."""
        async with self.backend.sql() as conn:
            requests = await conn.scalar(select(func.count()).select_from(service_requests))
            journaled = await conn.scalar(select(func.count()).select_from(messages))
        return int(requests or 0), int(journaled or 0)

    async def queued(self) -> int:
        return sum(
            [await self.bus.depth(Direction.REQUESTS, p) for p in ("ZAGS", "MVD_MIGR", "FNS")]
        )


@pytest.fixture
async def api(backend: Backend) -> AsyncIterator[Api]:
    journal = backend.open()
    bus = await open_bus(journal=journal, guard=public_guard())  # migrates the journal
    settings = Settings(api_tokens={TOKEN: PORTAL, PROVIDER_TOKEN: "ZAGS"})
    app = create_app(settings, bus.root)
    transport = httpx.ASGITransport(app=app)
    try:
        async with httpx.AsyncClient(transport=transport, base_url="http://test") as http:
            yield Api(http, bus, journal, backend)
    finally:
        await bus.close()


def assert_refused(resp: httpx.Response, status: int, code: str) -> dict[str, Any]:
    assert resp.status_code == status, resp.text
    assert resp.headers["content-type"].startswith("application/problem+json")
    body: dict[str, Any] = resp.json()
    assert (body["status"], body["code"]) == (status, code)
    return body


def _submission(**changes: Any) -> dict[str, Any]:
    return {"service": SERVICE, "applicant": copy.deepcopy(APPLICANT), **changes}


def _applicant_with(path: tuple[str, ...], value: Any) -> dict[str, Any]:
    body = _submission()
    target = body["applicant"]
    for key in path[:-1]:
        target = target[key]
    target[path[-1]] = value
    return body


def _raw_json(body: dict[str, Any], bad: str) -> bytes:
    """``body`` as JSON text where each ``BAD-MARK`` stands for ``bad`` (escaped as JSON
    escapes it: a lone surrogate cannot be encoded otherwise)."""
    return json.dumps(body).replace("BAD-MARK", f"\\u{ord(bad):04x}").encode()


# --- characters XML 1.0 cannot carry: 422 naming the field, nothing stored --------------

BODY_CASES = {
    "body.service": _submission(service="child-birthBAD-MARK-benefit"),
    "body.callback_url": _submission(callback_url="https://portal.example/cbBAD-MARK"),
    "body.applicant.child.last_name": _applicant_with(("child", "last_name"), "СмирBAD-MARKнова"),
    "body.applicant.parent.passport.number": _applicant_with(
        ("parent", "passport", "number"), "1234BAD-MARK56"
    ),
    "body.applicant.parent.phones[1]": _applicant_with(("parent", "phones"), ["1", "2BAD-MARK"]),
    "body.applicant.child.nickBAD-MARK": _applicant_with(("child", "nickBAD-MARK"), "x"),
}


@pytest.mark.parametrize("bad", BAD, ids=["nul", "u0001", "ufffe", "surrogate"])
@pytest.mark.parametrize("field", list(BODY_CASES))
async def test_body_string_xml_cannot_carry_is_422_naming_it(
    api: Api, field: str, bad: str
) -> None:
    resp = await api.http.post(
        REQUESTS,
        content=_raw_json(BODY_CASES[field], bad),
        headers={**AUTH, "Content-Type": "application/json"},
    )
    body = assert_refused(resp, 422, "schema_violation")
    expected = field.replace("BAD-MARK", f"\\u{ord(bad):04x}")
    assert body["context"]["field"] == expected
    # pydantic itself refuses a lone surrogate in a plain string field ("unicode")
    assert f"U+{ord(bad):04X}" in body["detail"] or "unicode" in body["detail"]
    assert await api.rows() == (0, 0)
    assert await api.queued() == 0


@pytest.mark.parametrize("bad", BAD_IN_HEADER, ids=["nul", "u0001"])
async def test_idempotency_key_xml_cannot_carry_is_422(api: Api, bad: str) -> None:
    resp = await api.http.post(
        REQUESTS, json=_submission(), headers={**AUTH, "Idempotency-Key": f"k{bad}1"}
    )
    body = assert_refused(resp, 422, "schema_violation")
    assert body["context"]["field"] == "header.Idempotency-Key"
    assert await api.rows() == (0, 0)
    assert await api.queued() == 0


@pytest.mark.parametrize("bad", BAD_IN_URL, ids=["nul", "u0001", "ufffe"])
@pytest.mark.parametrize("name", ["service", "after", "status", "since", "limit"])
async def test_query_parameter_xml_cannot_carry_is_422_naming_it(
    api: Api, name: str, bad: str
) -> None:
    resp = await api.http.get(REQUESTS, params={name: f"a{bad}b"}, headers=AUTH)
    body = assert_refused(resp, 422, "schema_violation")
    assert body["context"]["field"] == f"query.{name}"


@pytest.mark.parametrize("bad", BAD_IN_URL, ids=["nul", "u0001", "ufffe"])
@pytest.mark.parametrize(
    ("method", "path", "field"),
    [
        ("GET", REQUESTS + "/{}", "path.request_id"),
        ("DELETE", REQUESTS + "/{}", "path.request_id"),
        ("GET", "/api/v1/messages/{}", "path.message_id"),
    ],
)
async def test_path_parameter_xml_cannot_carry_is_422_naming_it(
    api: Api, method: str, path: str, field: str, bad: str
) -> None:
    resp = await api.http.request(method, path.format(quote(f"a{bad}b")), headers=AUTH)
    body = assert_refused(resp, 422, "schema_violation")
    assert body["context"]["field"] == field


async def test_a_page_cursor_hiding_nul_is_refused_as_malformed(api: Api) -> None:
    """A well-formed base64 cursor whose decoded id holds NUL (PostgreSQL refuses NUL)."""
    cursor = base64.urlsafe_b64encode(b"2026-01-01T12:00:00+00:00|a\x00b").decode().rstrip("=")
    resp = await api.http.get(REQUESTS, params={"after": cursor}, headers=AUTH)
    assert assert_refused(resp, 400, "invalid_content")["context"]["field"] == "after"


async def test_plain_unicode_and_allowed_controls_are_accepted(api: Api) -> None:
    """TAB, LF and CR are XML characters, and so is everything above U+001F but the
    surrogates and U+FFFE/U+FFFF: applicant data with them is taken."""
    body = _applicant_with(("note",), "Смирнова\tä\r\n\x7f 😀 \ufffd")
    resp = await api.http.post(REQUESTS, json=body, headers=AUTH)
    assert resp.status_code == 202, resp.text
    assert (await api.rows())[0] == 1


# --- body size limit: 413 before the body is parsed ----------------------------------

LIMIT = Settings().api_max_body_bytes


def _padded(size: int) -> bytes:
    """A valid submission of exactly ``size`` bytes (padded inside the applicant)."""
    body = _submission()
    body["applicant"]["note"] = ""
    short = len(json.dumps(body).encode())
    body["applicant"]["note"] = "x" * (size - short)
    raw = json.dumps(body).encode()
    assert len(raw) == size
    return raw


def test_the_default_limit_is_one_mebibyte() -> None:
    assert LIMIT == 1024 * 1024


async def test_a_body_at_the_limit_is_taken(api: Api) -> None:
    resp = await api.http.post(
        REQUESTS, content=_padded(LIMIT), headers={**AUTH, "Content-Type": "application/json"}
    )
    assert resp.status_code == 202, resp.text


async def test_a_declared_length_over_the_limit_is_413_unread(api: Api) -> None:
    reads = 0

    async def body() -> AsyncIterator[bytes]:
        nonlocal reads
        reads += 1
        yield b"{" + b" " * LIMIT + b"}"

    resp = await api.http.post(
        REQUESTS,
        content=body(),
        headers={**AUTH, "Content-Type": "application/json", "Content-Length": str(LIMIT + 2)},
    )
    problem = assert_refused(resp, 413, "message_too_large")
    assert problem["context"]["limit"] == LIMIT
    assert reads == 0  # refused from the header alone
    assert await api.rows() == (0, 0)


async def test_a_chunked_body_over_the_limit_is_413_while_streaming(api: Api) -> None:
    """No Content-Length, a long stream that is not even JSON: refused once it passes the
    limit (413, not a JSON error: nothing parsed it), without reading on."""
    chunk = b"x" * 65536
    sent = 0

    async def stream() -> AsyncIterator[bytes]:
        nonlocal sent
        while sent < 8 * LIMIT:
            sent += len(chunk)
            yield chunk

    resp = await api.http.post(
        REQUESTS, content=stream(), headers={**AUTH, "Content-Type": "application/json"}
    )
    assert "content-length" not in resp.request.headers
    assert_refused(resp, 413, "message_too_large")
    assert sent <= LIMIT + len(chunk)
    assert await api.rows() == (0, 0)


async def test_a_valid_submission_over_the_limit_is_not_stored(api: Api) -> None:
    resp = await api.http.post(
        REQUESTS, content=_padded(LIMIT + 1), headers={**AUTH, "Content-Type": "application/json"}
    )
    assert_refused(resp, 413, "message_too_large")
    assert await api.rows() == (0, 0)
    assert await api.queued() == 0


# --- Idempotency-Key: the same body is a retry, another body is 422 ---------------------

PARTS = 3  # child-birth-benefit fans out to ZAGS, MVD and FNS
PASSPORT_APPLICANT = CATALOGUE.get("passport-check").example


async def _post(api: Api, body: dict[str, Any] | bytes, key: str) -> httpx.Response:
    headers = {**AUTH, "Idempotency-Key": key, "Content-Type": "application/json"}
    raw = body if isinstance(body, bytes) else json.dumps(body).encode()
    return await api.http.post(REQUESTS, content=raw, headers=headers)


async def test_the_same_body_again_is_the_same_request(api: Api) -> None:
    body = _submission(deadline_s=600, callback_url="https://portal.example/cb")
    first = await _post(api, body, "k-1")
    assert first.status_code == 202, first.text
    # the same JSON, spelled differently: other key order, whitespace, 600.0 for 600
    respelled = dict(reversed(list({**body, "deadline_s": 600.0}.items())))
    again = await _post(api, json.dumps(respelled, indent=2).encode(), "k-1")
    assert (again.status_code, again.json()) == (200, first.json())
    assert await api.rows() == (1, PARTS)
    assert await api.queued() == PARTS


@pytest.mark.parametrize(
    "change",
    [
        {"applicant": _applicant_with(("parent", "passport", "number"), "654321")["applicant"]},
        {"applicant": {**_submission()["applicant"], "note": "one more key"}},
        {"service": "passport-check", "applicant": PASSPORT_APPLICANT},
        {"callback_url": "https://portal.example/other"},
        {"deadline_s": 60},
    ],
    ids=["applicant-value", "applicant-key", "service", "callback_url", "deadline_s"],
)
async def test_another_body_under_a_used_key_is_422_and_changes_nothing(
    api: Api, change: dict[str, Any]
) -> None:
    first = await _post(api, _submission(), "k-2")
    assert first.status_code == 202, first.text
    resp = await _post(api, {**_submission(), **change}, "k-2")
    problem = assert_refused(resp, 422, "idempotency_key_reused")
    assert problem["context"] == {"field": "Idempotency-Key", "id": first.json()["id"]}
    assert await api.rows() == (1, PARTS)
    assert await api.queued() == PARTS
    # the first request stands, and its own retry still works
    again = await _post(api, _submission(), "k-2")
    assert (again.status_code, again.json()["id"]) == (200, first.json()["id"])


async def test_a_request_stored_without_a_digest_compares_by_service(api: Api) -> None:
    """Rows from before migration 0005 keep no digest: as before, a retry naming the same
    service is the same request; another service is refused like any other body."""
    first = await _post(api, _submission(), "k-3")
    assert first.status_code == 202, first.text
    async with api.backend.sql() as conn:
        await conn.execute(service_requests.update().values(request_digest=None))
    other_applicant = _applicant_with(("parent", "passport", "number"), "654321")
    again = await _post(api, other_applicant, "k-3")
    assert (again.status_code, again.json()["id"]) == (200, first.json()["id"])
    other_service = {"service": "passport-check", "applicant": PASSPORT_APPLICANT}
    assert_refused(await _post(api, other_service, "k-3"), 422, "idempotency_key_reused")
    assert await api.rows() == (1, PARTS)


# --- only a participant allowed every part's message type may submit a service --------


async def test_a_provider_token_cannot_submit_a_service_request(api: Api) -> None:
    """ZAGS provides birth records and may request nothing: 403 at once, not a 202 that
    fails later; nothing stored, nothing sent."""
    resp = await api.http.post(
        REQUESTS,
        json=_submission(),
        headers={"Authorization": f"Bearer {PROVIDER_TOKEN}", "Idempotency-Key": "k-4"},
    )
    problem = assert_refused(resp, 403, "access_denied")
    assert problem["context"]["participant"] == "ZAGS"
    assert "urn://smevbus/types/zags/birth-record/1.0" in problem["context"]["message_types"]
    assert await api.rows() == (0, 0)
    assert await api.queued() == 0
