"""The ops REST API (``/api/v1/ops``, ``/api/v1/kpi``) on the memory bus, and the CLI
commands over it (``queues``, ``kpi``, ``kpi export``, ``dlq purge``) on a fake console.

The API runs in the real app (:func:`gateway.api.app.create_app`) over the testing bus
(:mod:`gateway.testing.bus`) and its fake clock; the CLI runs against the same app
serving a fake :class:`~gateway.ops.console_api.OpsConsole`, in process.
"""

from __future__ import annotations

import asyncio
import csv
import io
import json
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest
from rich.console import Console
from typer.testing import CliRunner

from gateway import cli
from gateway.api.app import create_app
from gateway.client.ops import OpsClient
from gateway.config import Settings
from gateway.core.lifecycle import MessageState
from gateway.ops.console_api import AgencyView, Overview, QueueView, Rate
from gateway.ops.deadletters import DeadLetterDetail, DeadLetterSummary, ReplayReport
from gateway.ops.kpi import AgencyKpi, KpiReport, Period, ServiceKpi
from gateway.ops.open_data import AGENCY_COLUMNS, SERVICE_COLUMNS
from gateway.testing.bus import Bus, birth_request, open_bus
from gateway.transport.base import Direction
from gateway.wire.rest import MessageTrace

TOKENS = {"ops-token": "ivanov"}
REQ = Direction.REQUESTS
AUTH = {"Authorization": "Bearer ops-token"}
ROUTES = [
    ("GET", "/api/v1/ops/overview"),
    ("GET", "/api/v1/ops/queues"),
    ("GET", "/api/v1/ops/agencies"),
    ("POST", "/api/v1/ops/agencies/ZAGS/check"),
    ("GET", "/api/v1/ops/trace/00000000-0000-1000-8000-000000000000"),
    ("GET", "/api/v1/ops/dead-letters/requests/ZAGS"),
    ("GET", "/api/v1/ops/dead-letters/requests/ZAGS/00000000-0000-1000-8000-000000000000"),
    ("POST", "/api/v1/ops/dead-letters/requests/ZAGS/replay"),
    ("POST", "/api/v1/ops/dead-letters/requests/ZAGS/purge"),
    ("GET", "/api/v1/kpi"),
]


async def eventually(probe: Callable[[], Awaitable[bool]], within: float = 10.0) -> None:
    """Poll ``probe`` until true; ``within`` only bounds a failure."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + within
    while not await probe():
        assert loop.time() < deadline, f"not within {within}s"
        await asyncio.sleep(0.01)


@pytest.fixture
async def bus() -> AsyncIterator[Bus]:
    bus = await open_bus(settings=Settings(ops_tokens=TOKENS))
    try:
        yield bus
    finally:
        await bus.close()


@pytest.fixture
async def http(bus: Bus) -> AsyncIterator[httpx.AsyncClient]:
    app = create_app(bus.root.settings, bus.root)
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://test") as client:
        yield client


async def dead_lettered(bus: Bus) -> str:
    sent = await bus.portal.send_request(birth_request())
    delivery = await bus.transport.get(REQ, "ZAGS")
    assert delivery is not None
    await delivery.reject("unreadable")
    message_id = str(sent.message_id)

    async def journaled() -> bool:
        return (await bus.journal.get(message_id)).state is MessageState.DEAD_LETTERED

    await eventually(journaled)
    return message_id


@pytest.mark.parametrize(("method", "path"), ROUTES)
@pytest.mark.parametrize("headers", [{}, {"Authorization": "Bearer wrong"}], ids=["none", "bad"])
async def test_every_ops_route_needs_an_operator_token(
    http: httpx.AsyncClient, method: str, path: str, headers: dict[str, str]
) -> None:
    answer = await http.request(method, path, headers=headers)
    assert answer.status_code == 401
    assert answer.headers["content-type"].startswith("application/problem+json")
    assert answer.json()["code"] == "unauthenticated"


async def test_portal_tokens_are_not_operator_tokens(bus: Bus) -> None:
    settings = bus.root.settings.model_copy(update={"api_tokens": {"portal-token": "PORTAL"}})
    app = create_app(settings, bus.root)
    async with httpx.AsyncClient(
        transport=httpx.ASGITransport(app=app), base_url="http://test"
    ) as client:
        answer = await client.get(
            "/api/v1/ops/queues", headers={"Authorization": "Bearer portal-token"}
        )
    assert answer.status_code == 401


async def test_overview_queues_and_agencies(bus: Bus, http: httpx.AsyncClient) -> None:
    await bus.portal.send_request(birth_request())
    bus.clock.advance(timedelta(seconds=30))

    overview = (await http.get("/api/v1/ops/overview", headers=AUTH)).json()
    queues = (await http.get("/api/v1/ops/queues", headers=AUTH)).json()["items"]
    agencies = (await http.get("/api/v1/ops/agencies", headers=AUTH)).json()["items"]

    assert len(overview["history"]) == 60
    assert overview["rate"]["messages_per_s"] == pytest.approx(1 / 60)
    assert overview["availability_target"] == 0.95
    zags = next(q for q in queues if q["name"] == "requests.ZAGS")
    assert (zags["ready"], zags["dead_letters"]) == (1, 0)
    assert zags["oldest_age_s"] == pytest.approx(30.0)
    assert {a["participant"] for a in agencies} == {"ZAGS", "MVD_MIGR", "FNS"}


async def test_replay_and_purge_over_http_name_the_operator(
    bus: Bus, http: httpx.AsyncClient
) -> None:
    message_id = await dead_lettered(bus)
    base = "/api/v1/ops/dead-letters/requests/ZAGS"

    [listed] = (await http.get(base, headers=AUTH)).json()["items"]
    shown = (await http.get(f"{base}/{message_id}", headers=AUTH)).json()
    replayed = await http.post(f"{base}/replay", headers=AUTH, json={"message_ids": [message_id]})

    assert (listed["message_id"], listed["journal_state"]) == (message_id, "DEAD_LETTERED")
    assert shown["xml"].startswith("<")
    assert shown["history"][-1]["to_state"] == "DEAD_LETTERED"
    assert replayed.json() == {"replayed": [message_id], "skipped": []}
    assert (await bus.journal.history(message_id))[-1].actor == "ivanov"

    delivery = await bus.transport.get(REQ, "ZAGS")
    assert delivery is not None
    await delivery.reject("unreadable again")

    async def again() -> bool:
        return (await bus.journal.get(message_id)).state is MessageState.DEAD_LETTERED

    await eventually(again)
    purged = await http.post(f"{base}/purge", headers=AUTH)

    assert purged.json() == {"purged": 1}
    last = (await bus.journal.history(message_id))[-1]
    assert (last.to_state, last.actor) == (MessageState.PURGED, "ivanov")
    trace = (await http.get(f"/api/v1/ops/trace/{message_id}", headers=AUTH)).json()
    assert [t["actor"] for t in trace["traces"][0]["transitions"]][-1] == "ivanov"


async def test_unknowns_are_404_and_bad_input_422(http: httpx.AsyncClient) -> None:
    unknown = "/api/v1/ops/trace/00000000-0000-1000-8000-000000000000"
    assert (await http.get(unknown, headers=AUTH)).json()["code"] == "not_found"
    nobody = await http.get("/api/v1/ops/dead-letters/requests/NOBODY", headers=AUTH)
    assert (nobody.status_code, nobody.json()["code"]) == (404, "not_found")
    sideways = await http.get("/api/v1/ops/dead-letters/sideways/ZAGS", headers=AUTH)
    assert (sideways.status_code, sideways.json()["code"]) == (422, "schema_violation")
    backwards = await http.get(
        "/api/v1/kpi",
        params={"from": "2026-01-02T00:00:00Z", "to": "2026-01-01T00:00:00Z"},
        headers=AUTH,
    )
    assert (backwards.status_code, backwards.json()["code"]) == (422, "schema_violation")


async def test_kpi_json_of_a_period(bus: Bus, http: httpx.AsyncClient) -> None:
    await bus.portal.send_request(birth_request())
    now = bus.clock.now()
    answer = await http.get(
        "/api/v1/kpi",
        params={
            "from": (now - timedelta(hours=1)).isoformat(),
            "to": (now + timedelta(minutes=1)).isoformat(),
            "agency": "ZAGS",
        },
        headers=AUTH,
    )
    body = answer.json()
    assert answer.status_code == 200
    total = body["agencies"][0]
    assert (total["agency"], total["message_type"], total["volume"]) == ("ZAGS", None, 1)
    assert total["pending"] == 1


async def test_openapi_documents_the_ops_api(http: httpx.AsyncClient) -> None:
    document = (await http.get("/openapi.json")).json()
    paths = document["paths"]
    for method, path in ROUTES:
        template = (
            path.replace("00000000-0000-1000-8000-000000000000", "{ident}")
            if "/trace/" in path
            else path
        )
        found = [p for p in paths if _matches(p, template)]
        assert any(method.lower() in paths[p] for p in found), path
    assert "operatorToken" in document["components"]["securitySchemes"]


def _matches(template: str, path: str) -> bool:
    a, b = template.strip("/").split("/"), path.strip("/").split("/")
    return len(a) == len(b) and all(x == y or x.startswith("{") for x, y in zip(a, b, strict=True))


# --- the CLI, over a fake console -------------------------------------------------------

T0 = datetime(2026, 3, 1, tzinfo=UTC)


@dataclass
class FakeConsole:
    purged: list[tuple[Direction, str, str]] = field(default_factory=list)
    periods: list[tuple[Period, str | None]] = field(default_factory=list)

    async def overview(self) -> Overview:
        rate = Rate(T0, 60.0, 0.0, 0.0, None, None)
        return Overview(rate, (rate,), await self.queues(), (), 0.95)

    async def queues(self) -> tuple[QueueView, ...]:
        return (QueueView(REQ, "ZAGS", 7, None, None, 12.5, 2),)

    async def agencies(self) -> tuple[AgencyView, ...]:
        return ()

    async def check_agency(self, participant: str) -> AgencyView:
        raise NotImplementedError

    async def trace(self, ident: str) -> tuple[MessageTrace, ...]:
        return ()

    async def dead_letters(
        self, direction: Direction, participant: str, *, limit: int = 100
    ) -> list[DeadLetterSummary]:
        return []

    async def dead_letter(
        self, direction: Direction, participant: str, message_id: str
    ) -> DeadLetterDetail:
        raise NotImplementedError

    async def replay(
        self, direction: Direction, participant: str, message_ids: Any, *, operator: str
    ) -> ReplayReport:
        raise NotImplementedError

    async def purge(self, direction: Direction, participant: str, *, operator: str) -> int:
        self.purged.append((direction, participant, operator))
        return 3

    async def kpis(self, period: Period, *, agency: str | None = None) -> KpiReport:
        self.periods.append((period, agency))
        zags = AgencyKpi("ZAGS", None, 20, 17, 1, 1, 1, 0, 0, 1.2, 3.4)
        service = ServiceKpi("child-birth-benefit", 5, 4, 0, 1, 0, 0, 0, 2.0, 9.0)
        return KpiReport(period, T0, timedelta(minutes=5), (zags,), (service,))


@pytest.fixture
def fake(monkeypatch: pytest.MonkeyPatch) -> FakeConsole:
    console = FakeConsole()
    app = create_app(Settings(ops_tokens=TOKENS))
    app.api.state.console = console

    def ops_client(url: str, token: str | None) -> OpsClient:
        assert url == "http://gw.test"
        return OpsClient(url, token or "", transport=httpx.ASGITransport(app=app))

    monkeypatch.setattr(cli.ops, "ops_client", ops_client)
    monkeypatch.setattr(cli.ops, "console", Console(width=200))
    monkeypatch.setenv("SMEVBUS_GATEWAY_URL", "http://gw.test")
    monkeypatch.setenv("SMEVBUS_OPS_TOKEN", "ops-token")
    return console


runner = CliRunner()


def test_cli_queues_prints_a_row_per_queue(fake: FakeConsole) -> None:
    result = runner.invoke(cli.app, ["queues"])
    assert result.exit_code == 0, result.output
    [row] = [line for line in result.output.splitlines() if "requests.ZAGS" in line]
    cells = [cell.strip() for cell in row.split("│")]
    assert cells[1:7] == ["requests.ZAGS", "7", "-", "12.5", "-", "2"]


def test_cli_without_a_token_fails_unauthenticated(
    fake: FakeConsole, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("SMEVBUS_OPS_TOKEN", "wrong")
    result = runner.invoke(cli.app, ["queues"])
    assert result.exit_code == 1
    assert "unauthenticated" in result.output


def test_cli_kpi_csv_has_the_open_data_columns(fake: FakeConsole) -> None:
    result = runner.invoke(
        cli.app, ["kpi", "--from", "2026-03-01", "--to", "2026-03-02", "--format", "csv"]
    )
    assert result.exit_code == 0, result.output
    agencies, services = result.output.split("\n\n")
    rows = list(csv.DictReader(io.StringIO(agencies)))
    assert list(rows[0]) == [name for name, _ in AGENCY_COLUMNS]
    assert (rows[0]["agency"], rows[0]["availability"], rows[0]["meets_target"]) == (
        "ZAGS",
        "0.9",
        "false",
    )
    assert next(csv.reader(io.StringIO(services))) == [name for name, _ in SERVICE_COLUMNS]
    [(period, agency)] = fake.periods
    assert (period.start, period.end, agency) == (T0, T0 + timedelta(days=1), None)


def test_cli_kpi_json_and_table(fake: FakeConsole) -> None:
    as_json = runner.invoke(cli.app, ["kpi", "--agency", "ZAGS", "--format", "json"])
    assert as_json.exit_code == 0, as_json.output
    body = json.loads(as_json.output)
    assert body["agencies"][0]["availability"] == pytest.approx(0.9)
    assert fake.periods[-1][1] == "ZAGS"
    table = runner.invoke(cli.app, ["kpi"])
    assert "90.0%" in table.output
    assert "child-birth-benefit" in table.output


def test_cli_kpi_export_writes_one_file_set_per_day(fake: FakeConsole, tmp_path: Path) -> None:
    result = runner.invoke(
        cli.app,
        ["kpi", "export", "--out", str(tmp_path), "--from", "2026-03-01", "--to", "2026-03-03"],
    )
    assert result.exit_code == 0, result.output
    assert sorted(p.name for p in tmp_path.iterdir()) == [
        "kpi-2026-03-01.json",
        "kpi-2026-03-02.json",
        "kpi-agencies-2026-03-01.csv",
        "kpi-agencies-2026-03-02.csv",
        "kpi-services-2026-03-01.csv",
        "kpi-services-2026-03-02.csv",
    ]
    document = json.loads((tmp_path / "kpi-2026-03-02.json").read_text())
    assert document["period_start"] == "2026-03-02T00:00:00Z"
    assert document["agencies"][0]["volume"] == 20
    assert [p.start.day for p, _ in fake.periods] == [1, 2]


def test_cli_dlq_purge_asks_first(fake: FakeConsole) -> None:
    refused = runner.invoke(cli.app, ["dlq", "purge", "ZAGS"], input="n\n")
    assert refused.exit_code == 1
    assert fake.purged == []
    confirmed = runner.invoke(cli.app, ["dlq", "purge", "ZAGS"], input="y\n")
    assert confirmed.exit_code == 0, confirmed.output
    assert "3 dead letter(s) of requests.ZAGS purged" in confirmed.output
    forced = runner.invoke(cli.app, ["dlq", "purge", "PORTAL", "-d", "responses", "--yes"])
    assert forced.exit_code == 0, forced.output
    assert fake.purged == [(REQ, "ZAGS", "ivanov"), (Direction.RESPONSES, "PORTAL", "ivanov")]
