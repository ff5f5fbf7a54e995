"""The REST client (gateway.client.rest) and the CLI over it, against the real REST app."""

from __future__ import annotations

import hashlib
import json
import uuid
from collections.abc import AsyncIterator
from datetime import timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest
from fastapi import FastAPI
from rich.console import Console
from typer.testing import CliRunner

from gateway import cli
from gateway.api.auth import TokenAuth
from gateway.api.rest import rest_router
from gateway.client.rest import (
    ServiceRequestsClient,
    ServiceRequestView,
    error_from_problem,
)
from gateway.core.aggregation import PartStatus
from gateway.core.envelope import MessageKind
from gateway.core.errors import (
    Conflict,
    IdempotencyKeyReused,
    InternalError,
    NotFound,
    SchemaViolation,
    Unauthenticated,
)
from gateway.core.lifecycle import MessageState
from gateway.core.service_lifecycle import ServiceState
from gateway.store.callbacks import CallbackState
from gateway.store.records import MessageRecord, TransitionRecord
from gateway.store.service_requests import ServiceRequestRecord
from gateway.wire.rest import Problem
from tests.unit.callback_fixtures import public_guard
from tests.unit.test_rest_api import (
    PORTAL,
    T0,
    TOKENS,
    FakeAggregator,
    _journal_exchange,
    aggregator,
    journal,
)

__all__ = ["aggregator", "journal"]  # the fixtures of the REST API tests, re-used

APPLICANT = {"passport": {"number": "4509 123456"}}


def make_app(aggregator: Any, journal: Any) -> FastAPI:
    app = FastAPI()
    auth = TokenAuth(TOKENS, allowed=lambda p: p != "BANNED")
    app.include_router(
        rest_router(
            auth,
            aggregator_provider=lambda _: aggregator,
            journal_provider=lambda _: journal,
            callback_guard=public_guard(),
        )
    )
    return app


def client_for(app: FastAPI, token: str = "portal-token") -> ServiceRequestsClient:
    return ServiceRequestsClient("http://test", token, transport=httpx.ASGITransport(app=app))


@pytest.fixture
async def api(aggregator: FakeAggregator, journal: Any) -> AsyncIterator[ServiceRequestsClient]:
    async with client_for(make_app(aggregator, journal)) as c:
        yield c


# --- submit, get, list, cancel ------------------------------------------------------


async def test_submit_returns_the_view_and_get_reads_it(
    api: ServiceRequestsClient, aggregator: FakeAggregator
) -> None:
    view = await api.submit("passport-check", APPLICANT, deadline_s=5)
    assert isinstance(view, ServiceRequestView)
    assert view.status is ServiceState.PENDING
    assert [(p.id, p.status) for p in view.parts] == [("passport", PartStatus.PENDING)]
    assert aggregator.records[str(view.id)].participant == PORTAL
    assert aggregator.calls[-1]["deadline_s"] == 5
    assert await api.get(view.id) == view
    assert await api.get(str(view.id)) == view
    assert view.callback is None


async def test_submit_with_a_callback_url_shows_the_callback(
    api: ServiceRequestsClient, aggregator: FakeAggregator
) -> None:
    url = "https://portal.example/smevbus/results"
    view = await api.submit("passport-check", APPLICANT, callback_url=url)
    assert aggregator.calls[-1]["callback_url"] == url
    assert view.callback is not None
    assert (view.callback.url, view.callback.state, view.callback.attempts) == (
        url,
        CallbackState.PENDING,
        0,
    )
    with pytest.raises(SchemaViolation) as refused:
        await api.submit("passport-check", APPLICANT, callback_url="ftp://portal.example/x")
    assert refused.value.detail["field"] == "callback_url"


async def test_list_pages_and_filters(api: ServiceRequestsClient) -> None:
    ids = [(await api.submit("passport-check", APPLICANT)).id for _ in range(3)]
    await api.submit("child-birth-benefit", APPLICANT)
    first = await api.list(service="passport-check", limit=2)
    assert [v.id for v in first.items] == ids[:2]
    assert first.next_cursor is not None
    rest = await api.list(service="passport-check", limit=2, after=first.next_cursor)
    assert [v.id for v in rest.items] == ids[2:]
    assert rest.next_cursor is None
    assert len((await api.list(status=ServiceState.PENDING)).items) == 4
    assert (await api.list(status="COMPLETED")).items == []
    assert len((await api.list(since=T0 + timedelta(seconds=3))).items) == 2


async def test_cancel_then_cancel_again_is_a_conflict(api: ServiceRequestsClient) -> None:
    view = await api.submit("passport-check", APPLICANT)
    cancelled = await api.cancel(view.id)
    assert cancelled.status is ServiceState.CANCELLED
    with pytest.raises(Conflict) as caught:
        await api.cancel(view.id)
    assert caught.value.detail["status"] == "CANCELLED"


async def test_idempotency_key_returns_the_first_request(
    api: ServiceRequestsClient, aggregator: FakeAggregator
) -> None:
    first = await api.submit("passport-check", APPLICANT, idempotency_key="k-1")
    again = await api.submit("passport-check", APPLICANT, idempotency_key="k-1")
    assert again.id == first.id
    assert len(aggregator.records) == 1
    with pytest.raises(IdempotencyKeyReused) as caught:
        await api.submit("child-birth-benefit", APPLICANT, idempotency_key="k-1")
    assert caught.value.code == "idempotency_key_reused"
    assert caught.value.detail == {"field": "Idempotency-Key", "id": str(first.id)}


# --- problem+json becomes the typed error ------------------------------------------


async def test_problems_are_raised_as_their_typed_errors(
    api: ServiceRequestsClient, aggregator: FakeAggregator, journal: Any
) -> None:
    with pytest.raises(NotFound) as not_found:
        await api.submit("no-such", APPLICANT)
    assert not_found.value.detail == {"service": "no-such"}
    with pytest.raises(SchemaViolation) as invalid:
        await api.submit("passport-check", {"passport": {}})
    assert invalid.value.code == "schema_violation"
    assert invalid.value.detail["field"] == "passport.number"
    assert "passport.number" in invalid.value.message
    with pytest.raises(NotFound):
        await api.get(uuid.uuid4())
    async with client_for(make_app(aggregator, journal), token="wrong") as stranger:
        with pytest.raises(Unauthenticated):
            await stranger.list()


def test_unknown_problem_code_is_internal_keeping_the_context() -> None:
    problem = Problem(
        type="urn:smevbus:error:new_thing",
        title="new thing",
        status=418,
        detail="something new",
        code="new_thing",
        origin="bus",
        transient=False,
        context={"field": "x"},
    )
    error = error_from_problem(problem)
    assert type(error) is InternalError
    assert error.message == "something new"
    assert error.detail == {"problem_code": "new_thing", "field": "x"}


async def test_non_problem_answers_and_unreachable_gateways_are_internal() -> None:
    def proxy(request: httpx.Request) -> httpx.Response:
        return httpx.Response(502, text="<html>bad gateway</html>")

    def down(request: httpx.Request) -> httpx.Response:
        raise httpx.ConnectError("connection refused", request=request)

    def garbage(request: httpx.Request) -> httpx.Response:
        return httpx.Response(200, json={"hello": "world"})

    for handler, words in ((proxy, "HTTP 502"), (down, "cannot reach"), (garbage, "unexpected")):
        transport = httpx.MockTransport(handler)
        async with ServiceRequestsClient("http://gw", "t", transport=transport) as c:
            with pytest.raises(InternalError, match=words):
                await c.get(uuid.uuid4())


# --- trace ---------------------------------------------------------------------------


async def test_trace_of_a_message(api: ServiceRequestsClient, journal: Any) -> None:
    request_id, response_id = await _journal_exchange(journal)
    trace = await api.trace(request_id)
    assert (trace.sender, trace.recipient, trace.state) == (PORTAL, "MVD", "QUEUED")
    assert [(t.from_state, t.to_state) for t in trace.transitions] == [
        (None, "ACCEPTED"),
        ("ACCEPTED", "QUEUED"),
    ]
    assert trace.responses == [response_id]
    with pytest.raises(NotFound):
        await api.trace(uuid.uuid1())


# --- wait ------------------------------------------------------------------------------


async def test_wait_reports_progress_and_returns_the_final_view(
    api: ServiceRequestsClient, aggregator: FakeAggregator
) -> None:
    view = await api.submit("passport-check", APPLICANT)
    seen: list[ServiceRequestView] = []

    async def on_progress(current: ServiceRequestView) -> None:
        seen.append(current)
        if current.status is ServiceState.PENDING:  # the agency answers meanwhile
            aggregator.answer(str(view.id), {"valid": True})

    final = await api.wait(view.id, timeout=5, poll_interval=0, on_progress=on_progress)
    assert final.status is ServiceState.COMPLETED
    assert final.parts[0].status is PartStatus.ANSWERED
    assert final.parts[0].data == {"valid": True}
    assert [v.status for v in seen] == [ServiceState.PENDING, ServiceState.COMPLETED]


async def test_wait_calls_back_only_on_changes_and_times_out(
    api: ServiceRequestsClient,
) -> None:
    view = await api.submit("passport-check", APPLICANT)
    seen: list[ServiceRequestView] = []
    with pytest.raises(TimeoutError, match="still PENDING"):
        await api.wait(view.id, timeout=0.05, poll_interval=0.01, on_progress=seen.append)
    assert len(seen) == 1  # polled several times, nothing changed


# --- the CLI ---------------------------------------------------------------------------


class MemoryJournal:
    """The three journal reads the trace endpoint makes, over plain objects.

    The CLI runs its own event loop, which an SQLite store opened by a fixture cannot
    follow; this needs none.
    """

    def __init__(self) -> None:
        self.request_id = str(uuid.uuid1())
        self.response_id = str(uuid.uuid1())
        sha = hashlib.sha256(b"x").hexdigest()
        self.message = MessageRecord(
            self.request_id,
            MessageKind.REQUEST,
            PORTAL,
            "MVD",
            "urn:mvd:passport",
            None,
            sha,
            b"<x/>",
            MessageState.QUEUED,
            T0,
            T0 + timedelta(seconds=1),
            None,
            False,
            2,
        )

    async def get(self, message_id: str) -> MessageRecord:
        if message_id != self.request_id:
            raise NotFound(f"no message {message_id}", message_id=message_id)
        return self.message

    async def history(self, message_id: str) -> list[TransitionRecord]:
        return [
            TransitionRecord(1, message_id, None, MessageState.ACCEPTED, T0, None, PORTAL),
            TransitionRecord(
                2,
                message_id,
                MessageState.ACCEPTED,
                MessageState.QUEUED,
                T0 + timedelta(seconds=1),
                "routed",
                "bus",
            ),
        ]

    async def responses_to(self, message_id: str) -> list[Any]:
        return [type("R", (), {"message_id": self.response_id})()]


class AnsweringAggregator(FakeAggregator):
    """Answers a pending request the second time it is read."""

    def __init__(self) -> None:
        super().__init__()
        self.reads: dict[str, int] = {}

    async def get(self, id: str) -> ServiceRequestRecord:
        record = await super().get(id)
        self.reads[id] = self.reads.get(id, 0) + 1
        if self.reads[id] >= 2 and not record.state.final:
            self.answer(str(record.id), {"valid": True, "series": "4509"})
            record = await super().get(id)
        return record


@pytest.fixture
def cli_world(monkeypatch: pytest.MonkeyPatch) -> tuple[AnsweringAggregator, MemoryJournal]:
    fake, memory = AnsweringAggregator(), MemoryJournal()
    app = make_app(fake, memory)

    def rest_client(gateway_url: str, token: str | None) -> ServiceRequestsClient:
        assert gateway_url == "http://gw.test"
        return client_for(app, token or "")

    monkeypatch.setattr(cli.portal, "rest_client", rest_client)
    monkeypatch.setattr(cli.portal, "console", Console(width=200))
    monkeypatch.setenv("SMEVBUS_GATEWAY_URL", "http://gw.test")
    monkeypatch.setenv("SMEVBUS_API_TOKEN", "portal-token")
    return fake, memory


runner = CliRunner()


def test_cli_submit_wait_shows_parts_and_the_result(
    cli_world: tuple[AnsweringAggregator, MemoryJournal], tmp_path: Path
) -> None:
    fake, _ = cli_world
    applicant = tmp_path / "applicant.json"
    applicant.write_text(json.dumps(APPLICANT))
    result = runner.invoke(
        cli.app,
        [
            "submit",
            "passport-check",
            "--applicant",
            str(applicant),
            "--wait",
            "--poll-interval",
            "0",
        ],
    )
    assert result.exit_code == 0, result.output
    (request_id,) = fake.records
    assert result.output.splitlines()[0] == request_id
    assert "passport (urn:mvd:passport): ANSWERED" in result.output
    assert "COMPLETED" in result.output
    assert "status:       COMPLETED" in result.output
    assert "result:" in result.output


def test_cli_submit_without_wait_prints_only_the_id(
    cli_world: tuple[AnsweringAggregator, MemoryJournal], tmp_path: Path
) -> None:
    fake, _ = cli_world
    applicant = tmp_path / "applicant.json"
    applicant.write_text(json.dumps(APPLICANT))
    result = runner.invoke(cli.app, ["submit", "passport-check", "--applicant", str(applicant)])
    assert result.exit_code == 0, result.output
    assert result.output.strip() == next(iter(fake.records))
    assert fake.calls[-1]["callback_url"] is None


def test_cli_submit_passes_the_callback_url(
    cli_world: tuple[AnsweringAggregator, MemoryJournal], tmp_path: Path
) -> None:
    fake, _ = cli_world
    applicant = tmp_path / "applicant.json"
    applicant.write_text(json.dumps(APPLICANT))
    url = "https://portal.example/smevbus/results"
    result = runner.invoke(
        cli.app,
        ["submit", "passport-check", "--applicant", str(applicant), "--callback-url", url],
    )
    assert result.exit_code == 0, result.output
    (record,) = fake.records.values()
    assert record.callback is not None
    assert record.callback.url == url
    shown = runner.invoke(cli.app, ["status", str(record.id)])
    assert shown.exit_code == 0, shown.output
    assert f"callback:     {record.callback.state} after 0 attempt(s)" in shown.output
    refused = runner.invoke(
        cli.app,
        ["submit", "passport-check", "--applicant", str(applicant), "--callback-url", "x"],
    )
    assert refused.exit_code == 1
    assert "schema_violation" in refused.output


def test_cli_status_shows_the_request(
    cli_world: tuple[AnsweringAggregator, MemoryJournal], tmp_path: Path
) -> None:
    fake, _ = cli_world
    applicant = tmp_path / "applicant.json"
    applicant.write_text(json.dumps(APPLICANT))
    runner.invoke(cli.app, ["submit", "passport-check", "--applicant", str(applicant)])
    (request_id,) = fake.records
    result = runner.invoke(cli.app, ["status", request_id])  # the 2nd read: answered
    assert result.exit_code == 0, result.output
    assert f"id:           {request_id}" in result.output
    assert "status:       COMPLETED (all_answered)" in result.output
    assert "urn:mvd:passport" in result.output
    assert "ANSWERED" in result.output


def test_cli_trace_shows_the_transitions(
    cli_world: tuple[AnsweringAggregator, MemoryJournal],
) -> None:
    _, memory = cli_world
    result = runner.invoke(cli.app, ["trace", memory.request_id])
    assert result.exit_code == 0, result.output
    assert f"message id:  {memory.request_id}" in result.output
    assert "from -> to:  PORTAL -> MVD" in result.output
    lines = result.output.splitlines()
    assert any("ACCEPTED" in line and "QUEUED" in line and "routed" in line for line in lines)
    assert f"response: {memory.response_id}" in result.output


def test_cli_errors_print_code_and_message_and_exit_1(
    cli_world: tuple[AnsweringAggregator, MemoryJournal], tmp_path: Path
) -> None:
    result = runner.invoke(cli.app, ["status", str(uuid.uuid4())])
    assert result.exit_code == 1
    assert "not_found: no service request" in result.output
    result = runner.invoke(cli.app, ["trace", str(uuid.uuid1())])
    assert result.exit_code == 1
    assert "not_found: no message" in result.output
    bad = tmp_path / "bad.json"
    bad.write_text("[1, 2]")
    result = runner.invoke(cli.app, ["submit", "passport-check", "--applicant", str(bad)])
    assert result.exit_code == 1
    assert "invalid_content" in result.output
    result = runner.invoke(cli.app, ["status", str(uuid.uuid4()), "--token", "nope"])
    assert result.exit_code == 1
    assert "unauthenticated" in result.output


def test_cli_without_a_token_fails_before_calling(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("SMEVBUS_API_TOKEN", raising=False)
    result = runner.invoke(cli.app, ["status", str(uuid.uuid4())])
    assert result.exit_code == 1
    assert "unauthenticated: no API token" in result.output
