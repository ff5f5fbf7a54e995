"""An adapter process's metrics and its ``/health``, ``/ready``, ``/metrics`` server."""

from __future__ import annotations

from collections.abc import AsyncIterator

import httpx
import pytest

from adapters.ops_server import OpsServer
from adapters.sdk.adapter import AgencyUnavailable, Reject
from adapters.sdk.metrics import PrometheusMetrics
from adapters.sdk.policies import RetryPolicy
from gateway.core.envelope import RejectionCode
from gateway.ops.metrics import CONTENT_TYPE
from gateway.testing.bus import Bus, birth_response
from gateway.testing.scrape import Samples, samples, this_process
from tests.unit.test_adapter_sdk import Agency, Rig

OPERATOR = "operator-token"


def agency_figures(page: Samples, agency: str) -> dict[str, float]:
    outcomes = ("answered", "rejected", "unavailable", "timed_out")
    figures = {
        o: page.value("smevbus_agency_requests_total", agency=agency, outcome=o) for o in outcomes
    }
    figures["calls"] = page.value("smevbus_stage_duration_seconds_count", stage="agency_call")
    figures["answer_times"] = page.total("smevbus_agency_answer_seconds_count", agency=agency)
    return figures


async def test_the_adapter_counts_its_agency_calls_by_outcome(bus: Bus) -> None:
    agency = "TEST_AGENCY"  # a label of its own: other tests' adapters count under theirs
    before = agency_figures(this_process(), agency)
    replies = Agency(
        birth_response(),  # answered at once
        Reject(RejectionCode.NO_DATA, "no such record"),  # refused: the agency is up
        AgencyUnavailable("connection refused"),  # down twice: given up
        AgencyUnavailable("connection refused"),
    )
    rig = Rig(bus, replies, retry=RetryPolicy(attempts=2, delays=(0.5,)))
    rig.runner.metrics = PrometheusMetrics(agency)
    for _ in range(3):
        await rig.request()
        assert await rig.runner.run_once() is not None

    after = agency_figures(this_process(), agency)
    moved = {k: after[k] - before[k] for k in after}
    assert moved == {
        "answered": 1,
        "rejected": 1,
        "unavailable": 1,
        "timed_out": 0,
        "calls": 4,  # one each, and two attempts at the unavailable one
        "answer_times": 2,  # only answers have an answer time
    }


async def test_a_timed_out_last_attempt_counts_as_timed_out(bus: Bus) -> None:
    agency = "SLOW_AGENCY"
    before = this_process().value(
        "smevbus_agency_requests_total", agency=agency, outcome="timed_out"
    )

    async def hangs() -> Reject:
        raise TimeoutError

    rig = Rig(bus, Agency(hangs), retry=RetryPolicy(attempts=1, delays=()))
    rig.runner.metrics = PrometheusMetrics(agency)
    await rig.request()
    assert await rig.runner.run_once() is not None

    after = this_process().value(
        "smevbus_agency_requests_total", agency=agency, outcome="timed_out"
    )
    assert after - before == 1
    assert rig.agency.calls == 1


# --- the ops server ----------------------------------------------------------------------


async def fine() -> None:
    pass


async def broken() -> None:
    raise ConnectionRefusedError("connection refused by 127.0.0.1:5672")


@pytest.fixture
async def server() -> AsyncIterator[OpsServer]:
    ops = OpsServer(
        {"keys": fine, "broker": broken},
        tokens={OPERATOR: "ivanov"},
        public=False,
        host="127.0.0.1",
    )
    await ops.start()
    yield ops
    await ops.close()


async def get(ops: OpsServer, path: str, **kw: object) -> httpx.Response:
    async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{ops.port}") as http:
        return await http.get(path, **kw)  # type: ignore[arg-type]


async def test_health_is_up_and_ready_names_what_failed(server: OpsServer) -> None:
    health = await get(server, "/health")
    ready = await get(server, "/ready")
    assert health.status_code == 200
    assert ready.status_code == 503
    assert ready.json() == {
        "status": "unavailable",
        "checks": {"keys": "ok", "broker": "unavailable: connection refused by 127.0.0.1:5672"},
    }
    server.checks["broker"] = fine
    assert (await get(server, "/ready")).json() == {
        "status": "ok",
        "checks": {"keys": "ok", "broker": "ok"},
    }


async def test_adapter_metrics_want_an_operator_token(server: OpsServer) -> None:
    refused = await get(server, "/metrics")
    wrong = await get(server, "/metrics", headers={"Authorization": "Bearer nope"})
    allowed = await get(server, "/metrics", headers={"Authorization": f"Bearer {OPERATOR}"})
    assert (refused.status_code, wrong.status_code) == (401, 401)
    assert refused.headers["WWW-Authenticate"] == "Bearer"
    assert allowed.status_code == 200
    assert allowed.headers["Content-Type"] == CONTENT_TYPE
    assert samples(allowed.text).types["smevbus_agency_requests"] == "counter"


async def test_public_adapter_metrics_need_no_token() -> None:
    ops = OpsServer({}, tokens={}, public=True, host="127.0.0.1")
    await ops.start()
    try:
        response = await get(ops, "/metrics")
    finally:
        await ops.close()
    assert response.status_code == 200
    assert "smevbus_stage_duration_seconds" in samples(response.text).types
