"""No process of the bus logs a token, a secret, key material or applicant data (issue 11).

The whole bus as processes (:func:`gateway.testing.chain.running_chain`: ``smevbus
serve``, the mock agencies, their adapters), once with console logs and once with JSON
logs, at DEBUG. The gateway knows an API token and a callback secret; the flow:

* a ``child-birth-benefit`` request for a person the agencies know, with a result
  callback whose URL carries a token of the portal's (refused once, then delivered,
  signed with the secret): its answer holds a birth act number and an INN;
* one for a person nobody knows (the agencies answer "not found");
* applicant data with a control character (once a 500 with the token and the applicant
  in the traceback's locals), and a list query with a token in its query string;
* two failures of the bus itself: the gateway's tables renamed away under it, so that a
  submit fails with 500 (the REST error path) and the journal writes of its parts fail
  (the aggregator's send path).

Then every byte each process wrote (stdout and stderr) is searched for each of those
values, as written and as JSON escapes them: none may appear.
"""

from __future__ import annotations

import asyncio
import copy
import json
from pathlib import Path
from typing import Any

import asyncpg
import httpx
import pytest

from gateway.testing.chain import Chain, running_chain
from tests.integration import store_fixtures
from tests.integration.test_service_requests_e2e import (
    APPLICANT,
    CallbackReceiver,
    wait_callback_settled,
    wait_final,
)

postgres_url = store_fixtures.postgres_url
pytestmark = pytest.mark.integration

TOKEN = "tok-7c1e9a52d4b84f3e"
CALLBACK_SECRET = "cbsecret-5e2a8d71c9f4"
#: A portal's own token in its callback URL, and one a client put in a query string.
URL_TOKEN = "urltok-3b9f62a1e8d4"
QUERY_TOKEN = "qrytok-8a4c1f7e2b95"
#: What the agencies answer for APPLICANT (the mock datasets).
BIRTH_ACT = "120197100000101234005"
INN = "710512345645"
STRANGER = {
    "child": {"last_name": "Шпионова", "first_name": "Агата", "birth_date": "2018-02-11"},
    "parent": {
        "last_name": "Шпионова",
        "first_name": "Агата",
        "birth_date": "1987-11-23",
        "passport": {"series": "9917", "number": "918273"},
    },
}
VICTIM = {
    "child": {"last_name": "Утечкина", "first_name": "Вера", "birth_date": "2017-05-04"},
    "parent": {
        "last_name": "Утечкина",
        "first_name": "Вера",
        "birth_date": "1984-09-30",
        "passport": {"series": "9918", "number": "527364"},
    },
}
NEVER_LOGGED = [
    TOKEN,
    CALLBACK_SECRET,
    URL_TOKEN,
    QUERY_TOKEN,
    APPLICANT["parent"]["last_name"],
    APPLICANT["parent"]["middle_name"],
    APPLICANT["child"]["middle_name"],
    BIRTH_ACT,
    INN,
    "Шпионова",
    "918273",
    "Утечкина",
    "527364",
    "-----BEGIN",
    "PRIVATE KEY",
]
SERVICE = "child-birth-benefit"
REQUESTS = "/api/v1/service-requests"


def leaks(logs: Path) -> dict[str, list[str]]:
    """Which values each log file holds, as written or escaped as in JSON."""
    found: dict[str, list[str]] = {}
    for path in sorted(logs.glob("*.log")):
        text = path.read_text("utf-8", errors="replace")
        hits = [v for v in NEVER_LOGGED if v in text or json.dumps(v)[1:-1] in text]
        if hits:
            found[path.name] = hits
    return found


async def rename(chain: Chain, table: str, to: str) -> None:
    conn = await asyncpg.connect(chain.database_url)
    try:
        await conn.execute(f'ALTER TABLE "{table}" RENAME TO "{to}"')
    finally:
        await conn.close()


async def flow(chain: Chain) -> None:
    with CallbackReceiver(statuses=[500]) as receiver:
        async with httpx.AsyncClient(
            base_url=chain.gateway.base_url,
            timeout=30,
            headers={"Authorization": f"Bearer {TOKEN}"},
        ) as http:
            known = await http.post(
                REQUESTS,
                json={
                    "service": SERVICE,
                    "applicant": APPLICANT,
                    "callback_url": f"{receiver.url}?token={URL_TOKEN}",
                },
                headers={"Idempotency-Key": "logs-1"},
            )
            assert known.status_code == 202, known.text
            unknown = await http.post(REQUESTS, json={"service": SERVICE, "applicant": STRANGER})
            assert unknown.status_code == 202, unknown.text

            control = copy.deepcopy(VICTIM)
            control["parent"]["passport"]["number"] = "527\x00364"
            refused = await http.post(REQUESTS, json={"service": SERVICE, "applicant": control})
            assert refused.status_code == 422, refused.text
            listed = await http.get(REQUESTS, params={"service": SERVICE, "token": QUERY_TOKEN})
            assert listed.status_code == 200, listed.text

            view = await wait_callback_settled(http, known.json()["links"]["self"])
            assert view["status"] == "COMPLETED", view
            assert view["result"]["parent_inn"] == INN
            assert view["callback"]["state"] == "delivered", view["callback"]
            assert (await wait_final(http, unknown.json()["links"]["self"]))["status"] != (
                "COMPLETED"
            )

            # The bus fails: the REST error path (500) ...
            await rename(chain, "service_request_messages", "hidden_links")
            try:
                failed = await http.post(REQUESTS, json={"service": SERVICE, "applicant": VICTIM})
            finally:
                await rename(chain, "hidden_links", "service_request_messages")
            assert failed.status_code == 500, failed.text
            assert failed.json()["code"] == "internal"
            # ... and a journal write under the router (the parts are refused)
            await rename(chain, "messages", "hidden_messages")
            try:
                sent: dict[str, Any] = (
                    await http.post(REQUESTS, json={"service": SERVICE, "applicant": VICTIM})
                ).json()
            finally:
                await rename(chain, "hidden_messages", "messages")
            assert sent.get("status") == "FAILED", sent
    assert len(receiver.posts()) == 2


@pytest.mark.parametrize("fmt", ["console", "json"])
def test_no_process_logs_tokens_secrets_keys_or_applicant_data(
    fmt: str, amqp_url: str, postgres_url: str, tmp_path: Path
) -> None:
    logs = tmp_path / "logs"
    logs.mkdir()
    with running_chain(
        amqp_url,
        tmp_path / "keys",
        logs,
        api_tokens={TOKEN: "PORTAL"},
        gateway_env={
            "SMEVBUS_CALLBACK_SECRET": CALLBACK_SECRET,
            "SMEVBUS_CALLBACK_HOSTS": "127.0.0.1",
            # The callback receiver is this test, on loopback: allowed explicitly.
            "SMEVBUS_CALLBACK_NETWORKS": "127.0.0.0/8",
        },
        shared_env={"SMEVBUS_LOG_FORMAT": fmt, "SMEVBUS_LOG_LEVEL": "DEBUG"},
    ) as chain:
        asyncio.run(flow(chain))

    assert leaks(logs) == {}
    gateway = (logs / "gateway.log").read_text("utf-8")
    # The logs say what happened, failures with their tracebacks, requests by path.
    for event in ("service_request_created", "rest_api_error", "send_failed"):
        assert event in gateway, f"{event} not logged"
    assert "Traceback (most recent call last)" in gateway
    assert "http_request" in gateway
    assert "/api/v1/service-requests" in gateway
    assert sorted(p.name for p in logs.glob("*.log")) == [
        "adapter-fns.log",
        "adapter-mvd_migration.log",
        "adapter-zags.log",
        "gateway.log",
        "mock-fns.log",
        "mock-mvd_migration.log",
        "mock-zags.log",
    ]
