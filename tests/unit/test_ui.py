"""The dashboard ``/ui`` over a fake console (:mod:`gateway.testing.ops`), through httpx's
ASGI transport: who gets in, what each page shows, what the operator's actions ask the
console, and the forms' CSRF guard."""

from __future__ import annotations

import asyncio
import hashlib
import re
from collections.abc import AsyncIterator
from dataclasses import replace
from datetime import UTC, datetime
from pathlib import Path

import httpx
import pytest
from fastapi import FastAPI

import gateway.ui
from gateway.api.app import create_app
from gateway.api.operators import COOKIE, OperatorAuth
from gateway.config import Settings
from gateway.core.errors import NotFound
from gateway.testing.bus import open_bus
from gateway.testing.ops import (
    SAMPLE_ANSWERED,
    SAMPLE_DEAD,
    SAMPLE_SERVICE_REQUEST,
    Action,
    FakeConsole,
    sample_console,
)
from gateway.transport.base import Direction
from gateway.ui import ui_router

NOW = datetime(2026, 1, 1, 12, 0, tzinfo=UTC)
TOKEN = "ops-token-ivanov"
OPERATOR = "ivanov"
HTML = {"Accept": "text/html,application/xhtml+xml"}
QUEUE = "/ui/dead-letters/requests/MVD_MIGR"


def ui_app(
    console: FakeConsole, tokens: dict[str, str] | None = None, *, refresh_s: float = 5.0
) -> FastAPI:
    app = FastAPI()
    auth = OperatorAuth({TOKEN: OPERATOR} if tokens is None else tokens)
    app.include_router(ui_router(lambda: console, auth, refresh_s=refresh_s))
    return app


@pytest.fixture
def console() -> FakeConsole:
    return sample_console(NOW)


@pytest.fixture
async def anonymous(console: FakeConsole) -> AsyncIterator[httpx.AsyncClient]:
    transport = httpx.ASGITransport(app=ui_app(console))
    async with httpx.AsyncClient(transport=transport, base_url="http://bus") as client:
        yield client


@pytest.fixture
async def browser(anonymous: httpx.AsyncClient) -> httpx.AsyncClient:
    """A client signed in through the login form (the cookie)."""
    answer = await anonymous.post("/ui/login", data={"token": TOKEN, "next": "/ui/"})
    assert answer.status_code == 303
    return anonymous


async def csrf_of(client: httpx.AsyncClient, path: str = "/ui/") -> str:
    page = await client.get(path, headers=HTML)
    found = re.search(r'name="csrf" value="([0-9a-f]{64})"', page.text)
    assert found is not None, page.text
    return found.group(1)


# --- who gets in ---------------------------------------------------------------------


@pytest.mark.parametrize(
    "path", ["/ui/", "/ui/messages?id=x", "/ui/dead-letters", QUEUE, "/ui/agencies"]
)
async def test_a_page_without_an_operator_redirects_a_browser_to_the_login(
    anonymous: httpx.AsyncClient, path: str
) -> None:
    answer = await anonymous.get(path, headers=HTML)
    assert answer.status_code == 303
    assert answer.headers["location"] == str(
        httpx.URL("http://bus/ui/login", params={"next": path})
    )


@pytest.mark.parametrize(
    "headers",
    [
        {"HX-Request": "true", "Accept": "text/html"},
        {"Accept": "text/event-stream"},
        {"Accept": "application/json"},
        {"Accept": "text/html", "Authorization": "Bearer not-a-token"},
    ],
)
async def test_htmx_sse_and_api_calls_without_an_operator_get_401(
    anonymous: httpx.AsyncClient, headers: dict[str, str]
) -> None:
    for path in ("/ui/", "/ui/live"):
        answer = await anonymous.get(path, headers=headers)
        if "Authorization" in headers and "text/html" in headers["Accept"]:
            # A browser with a bad bearer token still gets the login form.
            assert answer.status_code == 303
            continue
        assert answer.status_code == 401
        assert answer.headers["www-authenticate"] == "Bearer"


async def test_a_post_without_an_operator_changes_nothing(
    anonymous: httpx.AsyncClient, console: FakeConsole
) -> None:
    answer = await anonymous.post(f"{QUEUE}/replay", data={"message_id": SAMPLE_DEAD})
    assert answer.status_code == 401
    # A browser's form post (an expired session) goes to the login, and then home.
    answer = await anonymous.post(f"{QUEUE}/purge", data={"confirm": "MVD_MIGR"}, headers=HTML)
    assert answer.status_code == 303
    assert answer.headers["location"] == "http://bus/ui/login?next=%2Fui%2F"
    assert console.actions == []


async def test_login_sets_a_strict_http_only_cookie_and_goes_where_it_was_asked(
    anonymous: httpx.AsyncClient,
) -> None:
    answer = await anonymous.post("/ui/login", data={"token": TOKEN, "next": "/ui/agencies"})
    assert answer.status_code == 303
    assert answer.headers["location"] == "/ui/agencies"
    cookie = answer.headers["set-cookie"]
    assert cookie.startswith(f"{COOKIE}={TOKEN};")
    attributes = {part.strip().lower() for part in cookie.split(";")}
    assert {"httponly", "samesite=strict", "path=/"} <= attributes
    assert "secure" not in attributes
    page = await anonymous.get("/ui/agencies", headers=HTML)
    assert page.status_code == 200
    assert f'<strong id="operator">{OPERATOR}</strong>' in page.text


async def test_login_over_https_sets_a_secure_cookie(console: FakeConsole) -> None:
    transport = httpx.ASGITransport(app=ui_app(console))
    async with httpx.AsyncClient(transport=transport, base_url="https://bus") as client:
        answer = await client.post("/ui/login", data={"token": TOKEN})
    attributes = {part.strip().lower() for part in answer.headers["set-cookie"].split(";")}
    assert "secure" in attributes


@pytest.mark.parametrize(
    "target", ["//evil.example/ui", "https://evil.example/", "/ui/login", "/api/v1/x", "/ui\\x"]
)
async def test_login_goes_only_to_dashboard_pages(
    anonymous: httpx.AsyncClient, target: str
) -> None:
    answer = await anonymous.post("/ui/login", data={"token": TOKEN, "next": target})
    assert answer.headers["location"] == "/ui/"


async def test_a_wrong_token_is_refused_with_the_form_again(anonymous: httpx.AsyncClient) -> None:
    answer = await anonymous.post("/ui/login", data={"token": "guess"})
    assert answer.status_code == 401
    assert "not a valid operator token" in answer.text
    assert "set-cookie" not in answer.headers


async def test_without_operator_tokens_nobody_gets_in(console: FakeConsole) -> None:
    transport = httpx.ASGITransport(app=ui_app(console, tokens={}))
    async with httpx.AsyncClient(transport=transport, base_url="http://bus") as client:
        assert (await client.post("/ui/login", data={"token": TOKEN})).status_code == 401
        assert (await client.get("/ui/", headers=HTML)).status_code == 303


async def test_a_bearer_token_opens_the_pages_too(anonymous: httpx.AsyncClient) -> None:
    answer = await anonymous.get("/ui/", headers={"Authorization": f"Bearer {TOKEN}"})
    assert answer.status_code == 200
    assert OPERATOR in answer.text


async def test_logout_ends_the_session(browser: httpx.AsyncClient) -> None:
    answer = await browser.post("/ui/logout", data={"csrf": await csrf_of(browser)})
    assert answer.status_code == 303
    assert answer.headers["location"].endswith("/ui/login")
    assert "max-age=0" in answer.headers["set-cookie"].lower()
    assert (await browser.get("/ui/", headers=HTML)).status_code == 303


# --- the forms' CSRF guard -------------------------------------------------------------


@pytest.mark.parametrize(
    ("data", "headers"),
    [
        ({"message_id": SAMPLE_DEAD}, {}),
        ({"message_id": SAMPLE_DEAD, "csrf": "0" * 64}, {}),
        ({"message_id": SAMPLE_DEAD, "csrf": "TOKEN"}, {"Origin": "https://evil.example"}),
        ({"message_id": SAMPLE_DEAD, "csrf": "TOKEN"}, {"Sec-Fetch-Site": "cross-site"}),
    ],
)
async def test_a_cookie_post_without_the_session_token_or_from_elsewhere_is_refused(
    browser: httpx.AsyncClient,
    console: FakeConsole,
    data: dict[str, str],
    headers: dict[str, str],
) -> None:
    if data.get("csrf") == "TOKEN":
        data = {**data, "csrf": await csrf_of(browser)}
    answer = await browser.post(f"{QUEUE}/replay", data=data, headers=headers)
    assert answer.status_code == 403
    assert console.actions == []
    assert len(await console.dead_letters(Direction.REQUESTS, "MVD_MIGR")) == 1


async def test_the_session_token_also_passes_as_the_htmx_header(
    browser: httpx.AsyncClient, console: FakeConsole
) -> None:
    answer = await browser.post(
        "/ui/agencies/MVD_MIGR/check",
        headers={"X-CSRF-Token": await csrf_of(browser), "Origin": "http://bus"},
    )
    assert answer.status_code == 303
    assert console.actions == [Action("check", None, None, "MVD_MIGR")]


async def test_a_bearer_post_needs_no_csrf_token(
    anonymous: httpx.AsyncClient, console: FakeConsole
) -> None:
    answer = await anonymous.post(
        f"{QUEUE}/replay",
        data={"message_id": SAMPLE_DEAD},
        headers={"Authorization": f"Bearer {TOKEN}"},
    )
    assert answer.status_code == 200
    assert console.actions[0].operator == OPERATOR


# --- the pages --------------------------------------------------------------------------


async def test_overview_shows_rates_queues_and_agencies_against_the_target(
    browser: httpx.AsyncClient,
) -> None:
    page = (await browser.get("/ui/", headers=HTML)).text
    assert '<dd id="messages-rate">3.50/s</dd>' in page
    assert '<dd id="faults-rate">0.60/s</dd>' in page
    assert page.count('<svg class="chart"') == 2
    queue = _row(page, "queue-requests.MVD_MIGR")
    assert [_text(cell) for cell in re.findall(r"<td[^>]*>(.*?)</td>", queue)] == [
        "17",
        "2",
        "5 min 12 s",
        "0 (none)",
        "1",
    ]
    assert f'href="{QUEUE}"' in queue
    under = _row(page, "agency-MVD_MIGR")
    assert 'class="under"' in under
    assert "81.2 %" in under
    assert "below target" in under
    assert "4.2 s" in under
    fine = _row(page, "agency-ZAGS")
    assert "99.2 %" in fine
    assert "below target" not in fine
    assert 'sse-connect="/ui/live"' in page


async def test_message_search_by_message_id_shows_the_lifecycle_with_timings(
    browser: httpx.AsyncClient,
) -> None:
    page = (await browser.get("/ui/messages", params={"id": SAMPLE_ANSWERED}, headers=HTML)).text
    assert page.count('class="trace"') == 1
    assert f"<code>{SAMPLE_ANSWERED}</code>" in page
    rows = re.findall(r"<tr>\s*<td>(.*?)</tr>", page, re.S)
    assert len(rows) == 5
    last = [_text(c) for c in re.findall(r"<td[^>]*>(.*?)</td>", "<td>" + rows[-1], re.S)]
    assert last[1:5] == ["330 ms", "20 ms", "RESPONDED → RESPONSE_DELIVERED", ""]


async def test_message_search_by_service_request_shows_every_part(
    browser: httpx.AsyncClient,
) -> None:
    page = (
        await browser.get(
            "/ui/messages", params={"id": f" {SAMPLE_SERVICE_REQUEST} "}, headers=HTML
        )
    ).text
    assert page.count('class="trace"') == 2
    assert "2 messages" in page


async def test_message_search_says_when_nothing_is_found(browser: httpx.AsyncClient) -> None:
    page = (await browser.get("/ui/messages", params={"id": "nope"}, headers=HTML)).text
    assert "No message or service request <code>nope</code>" in page


async def test_dead_letter_queues_and_a_queue_list_the_letters(
    browser: httpx.AsyncClient,
) -> None:
    index = (await browser.get("/ui/dead-letters", headers=HTML)).text
    assert f'<a href="{QUEUE}">requests.MVD_MIGR</a>' in index
    queue = (await browser.get(QUEUE, headers=HTML)).text
    row = _row(queue, f"letter-{SAMPLE_DEAD}")
    assert "delivery_limit: delivered 5 times without an ack" in row
    assert f'name="message_id" value="{SAMPLE_DEAD}"' in row


async def test_a_dead_letter_shows_its_xml_escaped(browser: httpx.AsyncClient) -> None:
    page = await browser.get(f"{QUEUE}/messages/{SAMPLE_DEAD}", headers=HTML)
    assert page.status_code == 200
    xml = page.text.split('<pre class="xml" id="xml" tabindex="0"><code>')[1].split("</code>")[0]
    assert xml.startswith("&lt;ns1:PassportValidityRequest xmlns:ns1=&#34;urn://")
    assert "&amp;lt;script&amp;gt;alert(1)&amp;lt;/script&amp;gt;" in xml
    assert "<ns1:" not in page.text
    assert "<script>alert" not in page.text


async def test_an_unknown_dead_letter_or_queue_direction_is_404(
    browser: httpx.AsyncClient,
) -> None:
    assert (await browser.get(f"{QUEUE}/messages/nope", headers=HTML)).status_code == 404
    assert (await browser.get("/ui/dead-letters/sideways/ZAGS", headers=HTML)).status_code == 404


async def test_replay_one_asks_the_console_with_the_operator_and_the_trace_shows_who(
    browser: httpx.AsyncClient, console: FakeConsole
) -> None:
    answer = await browser.post(
        f"{QUEUE}/replay", data={"csrf": await csrf_of(browser), "message_id": SAMPLE_DEAD}
    )
    assert answer.status_code == 200
    assert console.actions == [
        Action("replay", OPERATOR, Direction.REQUESTS, "MVD_MIGR", (SAMPLE_DEAD,))
    ]
    assert "1 replayed, 0 skipped, by <strong>ivanov</strong>" in answer.text
    trace = (await browser.get("/ui/messages", params={"id": SAMPLE_DEAD}, headers=HTML)).text
    last = trace.split("<tbody>")[1].split("</tbody>")[0].split("<tr>")[-1]
    assert "DEAD_LETTERED → <strong>QUEUED</strong>" in last
    assert f'<td class="actor">{OPERATOR}</td>' in last


async def test_replay_all_asks_for_every_letter(
    browser: httpx.AsyncClient, console: FakeConsole
) -> None:
    answer = await browser.post(f"{QUEUE}/replay", data={"csrf": await csrf_of(browser)})
    assert answer.status_code == 200
    assert console.actions == [Action("replay", OPERATOR, Direction.REQUESTS, "MVD_MIGR", None)]


async def test_purge_goes_through_a_confirmation(
    browser: httpx.AsyncClient, console: FakeConsole
) -> None:
    csrf = await csrf_of(browser)
    unconfirmed = await browser.post(f"{QUEUE}/purge", data={"csrf": csrf})
    assert unconfirmed.status_code == 303
    assert unconfirmed.headers["location"] == f"http://bus{QUEUE}/purge"
    assert console.actions == []
    confirm = (await browser.get(f"{QUEUE}/purge", headers=HTML)).text
    assert "drops <strong>1</strong> dead letter of requests.MVD_MIGR" in confirm
    assert 'name="confirm" value="MVD_MIGR"' in confirm
    done = await browser.post(f"{QUEUE}/purge", data={"csrf": csrf, "confirm": "MVD_MIGR"})
    assert done.status_code == 200
    assert "1 dead letter purged by <strong>ivanov</strong>" in done.text
    assert console.actions == [Action("purge", OPERATOR, Direction.REQUESTS, "MVD_MIGR")]


async def test_check_now_in_place_returns_the_agency_row(
    browser: httpx.AsyncClient, console: FakeConsole
) -> None:
    answer = await browser.post(
        "/ui/agencies/MVD_MIGR/check",
        data={"csrf": await csrf_of(browser, "/ui/agencies")},
        headers={"HX-Request": "true"},
    )
    assert answer.status_code == 200
    assert answer.text.lstrip().startswith('<tr id="agency-MVD_MIGR" class="under">')
    assert '<span class="ok">yes</span> <span class="detail">(200 in 48 ms)</span>' in answer.text
    assert console.actions == [Action("check", None, None, "MVD_MIGR")]


async def test_check_now_without_script_comes_back_to_the_agencies(
    browser: httpx.AsyncClient,
) -> None:
    csrf = await csrf_of(browser, "/ui/agencies")
    answer = await browser.post("/ui/agencies/MVD_MIGR/check", data={"csrf": csrf})
    assert answer.status_code == 303
    assert answer.headers["location"] == "http://bus/ui/agencies#agency-MVD_MIGR"
    page = (await browser.get("/ui/agencies", headers=HTML)).text
    assert "(200 in 48 ms)" in _row(page, "agency-MVD_MIGR")
    unknown = await browser.post("/ui/agencies/NOBODY/check", data={"csrf": csrf})
    assert unknown.status_code == 404


async def test_a_failing_console_is_a_page_not_a_stack_trace(
    browser: httpx.AsyncClient, console: FakeConsole, monkeypatch: pytest.MonkeyPatch
) -> None:
    async def broken(ident: str) -> tuple[()]:
        raise NotFound("the journal is gone")

    monkeypatch.setattr(console, "trace", broken)
    answer = await browser.get("/ui/messages", params={"id": "x"}, headers=HTML)
    assert answer.status_code == 404
    assert "the journal is gone" in answer.text


async def test_pages_forbid_framing_and_foreign_scripts(browser: httpx.AsyncClient) -> None:
    answer = await browser.get("/ui/", headers=HTML)
    policy = answer.headers["content-security-policy"]
    assert "script-src 'self'" in policy
    assert "frame-ancestors 'none'" in policy
    assert answer.headers["cache-control"] == "no-store"


# --- live refresh ------------------------------------------------------------------------


async def stream_until(app: FastAPI, events: int) -> list[str]:
    """``GET /ui/live`` straight through ASGI (httpx's transport reads a whole body
    first): the client goes away after ``events`` events; returns them once the app has
    finished, which it must do by itself."""
    gone = asyncio.Event()
    chunks: list[str] = []
    started: list[int] = []

    async def receive() -> dict[str, object]:
        if not started:
            started.append(1)
            return {"type": "http.request", "body": b"", "more_body": False}
        await gone.wait()
        return {"type": "http.disconnect"}

    async def send(message: dict[str, object]) -> None:
        if message["type"] == "http.response.start":
            assert message["status"] == 200
            assert (b"content-type", b"text/event-stream; charset=utf-8") in message["headers"]
        body = message.get("body")
        if isinstance(body, bytes) and body:
            chunks.append(body.decode())
            if len(chunks) >= events:
                gone.set()

    scope = {
        "type": "http",
        "asgi": {"version": "3.0"},
        "http_version": "1.1",
        "method": "GET",
        "scheme": "http",
        "path": "/ui/live",
        "raw_path": b"/ui/live",
        "query_string": b"",
        "root_path": "",
        "headers": [(b"host", b"bus"), (b"authorization", f"Bearer {TOKEN}".encode())],
        "client": ("127.0.0.1", 50000),
        "server": ("bus", 80),
    }
    await asyncio.wait_for(app(scope, receive, send), timeout=10)
    return chunks


async def test_the_live_stream_sends_overview_fragments_and_stops_when_the_client_goes(
    console: FakeConsole,
) -> None:
    events = await stream_until(ui_app(console, refresh_s=0), events=2)
    assert len(events) >= 2
    for event in events[:2]:
        lines = event.rstrip("\n").split("\n")
        assert lines[0] == "event: overview"
        assert all(line.startswith("data: ") for line in lines[1:])
        assert '<dd id="messages-rate">3.50/s</dd>' in event


async def test_the_live_stream_outlives_a_failing_console(
    console: FakeConsole, monkeypatch: pytest.MonkeyPatch
) -> None:
    async def down() -> None:
        raise ConnectionError("broker unreachable")

    monkeypatch.setattr(console, "overview", down)
    events = await stream_until(ui_app(console, refresh_s=0), events=2)
    assert "could not be read just now" in events[1]
    assert "broker unreachable" in events[1]


# --- the app and its static files -------------------------------------------------------


async def test_the_gateway_serves_ui_over_its_bus_or_the_console_given(
    console: FakeConsole,
) -> None:
    bus = await open_bus()
    try:
        settings = Settings(ops_tokens={TOKEN: OPERATOR})
        agency = replace(console.overview_view.agencies[0], participant="FAKE_AGENCY")
        console.overview_view = replace(console.overview_view, agencies=(agency,))
        for app, shows in (
            (create_app(settings, bus.root), "requests.ZAGS"),  # over the bus's registry
            (create_app(settings, bus.root, console=console), "FAKE_AGENCY"),
        ):
            transport = httpx.ASGITransport(app=app)
            async with httpx.AsyncClient(transport=transport, base_url="http://bus") as client:
                assert (await client.get("/ui/", headers=HTML)).status_code == 303
                page = await client.get(
                    "/ui/", headers={**HTML, "Authorization": f"Bearer {TOKEN}"}
                )
                assert page.status_code == 200, page.text
                assert shows in page.text
    finally:
        await bus.close()


async def test_static_files_are_served_by_name_only(anonymous: httpx.AsyncClient) -> None:
    script = await anonymous.get("/ui/static/htmx.min.js")
    assert script.status_code == 200
    assert script.headers["content-type"].startswith("text/javascript")
    assert script.content.startswith(b"var htmx=function()")
    assert (await anonymous.get("/ui/static/ui.css")).status_code == 200
    for name in ("README.md", "htmx.LICENSE", "..%2F..%2Fassets.py", "nope.js"):
        assert (await anonymous.get(f"/ui/static/{name}")).status_code == 404


def test_the_vendored_scripts_are_the_ones_the_readme_names() -> None:
    static = Path(gateway.ui.__file__).parent / "static"
    readme = (static / "README.md").read_text()
    listed = dict(
        (name, digest) for digest, name in re.findall(r"^([0-9a-f]{64})  (\S+)$", readme, re.M)
    )
    assert set(listed) == {"htmx.min.js", "htmx-ext-sse.min.js"}
    for name, digest in listed.items():
        assert hashlib.sha256((static / name).read_bytes()).hexdigest() == digest


def _row(page: str, row_id: str) -> str:
    found = re.search(rf'<tr id="{re.escape(row_id)}"[^>]*>.*?</tr>', page, re.S)
    assert found is not None, f"no row {row_id}"
    return found.group(0)


def _text(cell: str) -> str:
    return re.sub(r"<[^>]+>", "", cell).strip()
