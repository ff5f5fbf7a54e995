"""The operator's dashboard, ``/ui``: server-rendered pages over an
:class:`~gateway.ops.console_api.OpsConsole`.

Every page works without JavaScript (links and plain forms); with it, htmx refreshes the
overview from a server-sent event stream and runs the agency checks in place. What the
operator does (replay, purge) goes to the console with their name, which the journal
keeps. Who may look and how forms are guarded is :mod:`gateway.ui.session`.
"""

# No ``from __future__ import annotations``: FastAPI resolves the endpoints'
# annotations, and ``Operator``/``Acting`` are local to ui_router.

from collections.abc import Callable, Coroutine
from typing import Annotated, Any

import structlog
from fastapi import APIRouter, Depends, Form, Query, Request, Response
from fastapi.exceptions import RequestValidationError
from fastapi.responses import HTMLResponse, RedirectResponse, StreamingResponse
from fastapi.routing import APIRoute

from gateway.api.operators import OperatorAuth
from gateway.core.errors import AccessDenied, NotFound, SmevbusError, Unauthenticated
from gateway.ops.console_api import OpsConsole
from gateway.transport.base import Direction
from gateway.ui import live, session
from gateway.ui.assets import static_file
from gateway.ui.render import Templates, charts

log = structlog.get_logger(__name__)

#: How often the overview's event stream sends a fresh fragment, seconds.
REFRESH_S = 5.0
#: The longest MessageID or service-request id the search takes.
MAX_IDENT = 100
#: Every page: only this site's scripts, styles and connections; never in a frame.
PAGE_HEADERS = {
    "Cache-Control": "no-store",
    "Content-Security-Policy": (
        "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
        "connect-src 'self'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'"
    ),
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "same-origin",
}

_templates = Templates()


def _error_page(request: Request, status: int, title: str, detail: str) -> HTMLResponse:
    html = _templates.render(
        "error.html", operator=None, csrf="", active="", title=title, detail=detail
    )
    return HTMLResponse(html, status_code=status, headers=PAGE_HEADERS)


class UiRoute(APIRoute):
    """A /ui route: no operator is 303 to the login form (a browser navigating) or 401;
    refusals and failures are small HTML pages, never a stack trace."""

    def get_route_handler(self) -> Callable[[Request], Coroutine[Any, Any, Response]]:
        handler = super().get_route_handler()

        async def route(request: Request) -> Response:
            try:
                return await handler(request)
            except Unauthenticated as exc:
                if session.wants_page(request):
                    # Back to the page after signing in; a form post is not repeated.
                    target = request.url.path if request.method == "GET" else "/ui/"
                    if request.method == "GET" and request.url.query:
                        target += "?" + request.url.query
                    return RedirectResponse(
                        request.url_for("ui_login").include_query_params(next=target),
                        status_code=303,
                    )
                return Response(
                    exc.message,
                    status_code=401,
                    media_type="text/plain",
                    headers={"WWW-Authenticate": "Bearer"},
                )
            except AccessDenied as exc:
                return _error_page(request, 403, "Refused", exc.message)
            except NotFound as exc:
                return _error_page(request, 404, "Not found", exc.message)
            except RequestValidationError:
                return _error_page(request, 404, "Not found", "No such page.")
            except SmevbusError as exc:
                log.warning("ui_console_failed", path=request.url.path, error=exc.code)
                return _error_page(request, 503, "The console could not answer", exc.message)

        return route


def ui_router(
    consoles: Callable[[], OpsConsole], auth: OperatorAuth, *, refresh_s: float = REFRESH_S
) -> APIRouter:
    """The ``/ui`` pages on the console ``consoles()`` gives (the app's, made once the bus
    runs), for the operators ``auth`` knows."""
    ui = APIRouter(prefix="/ui", route_class=UiRoute, include_in_schema=False)

    def operator(request: Request) -> str:
        return auth.operator_for(request)

    async def acting_operator(request: Request) -> str:
        name = auth.operator_for(request)
        await session.check_csrf(request)
        return name

    Operator = Annotated[str, Depends(operator)]  # noqa: N806
    Acting = Annotated[str, Depends(acting_operator)]  # noqa: N806

    def page(request: Request, template: str, who: str, active: str, **context: Any) -> Response:
        html = _templates.render(
            template, operator=who, csrf=session.csrf_token(request), active=active, **context
        )
        return HTMLResponse(html, headers=PAGE_HEADERS)

    async def overview_context() -> dict[str, Any]:
        overview = await consoles().overview()
        traffic, latency = charts(overview)
        return {"overview": overview, "traffic": traffic, "latency": latency}

    async def overview_fragment() -> str:
        return _templates.render("_overview.html", **await overview_context())

    def unavailable(exc: Exception) -> str:
        return _templates.render("_unavailable.html", error=exc)

    # --- signing in -------------------------------------------------------------------

    @ui.get("/login", name="ui_login")
    async def login_form(request: Request, next: str | None = None) -> Response:
        html = _templates.render(
            "login.html",
            operator=None,
            csrf="",
            active="",
            next=session.safe_next(next),
            error=None,
        )
        return HTMLResponse(html, headers=PAGE_HEADERS)

    @ui.post("/login")
    async def login(
        request: Request,
        token: Annotated[str, Form()] = "",
        next: Annotated[str, Form()] = "/ui/",
    ) -> Response:
        session.check_same_origin(request)
        try:
            auth.operator_of(token.strip())
        except Unauthenticated:
            html = _templates.render(
                "login.html",
                operator=None,
                csrf="",
                active="",
                next=session.safe_next(next),
                error="That is not a valid operator token.",
            )
            return HTMLResponse(html, status_code=401, headers=PAGE_HEADERS)
        response = RedirectResponse(session.safe_next(next), status_code=303)
        session.set_session(response, request, token.strip())
        return response

    @ui.post("/logout")
    async def logout(request: Request, _who: Acting) -> Response:
        response = RedirectResponse(request.url_for("ui_login"), status_code=303)
        session.end_session(response, request)
        return response

    @ui.get("/static/{name}", name="ui_static")
    async def static(name: str) -> Response:
        return static_file(name)

    # --- overview -----------------------------------------------------------------------

    @ui.get("/", name="ui_overview")
    async def overview(request: Request, who: Operator) -> Response:
        return page(request, "overview.html", who, "overview", **await overview_context())

    @ui.get("/live", name="ui_live")
    async def live_overview(_who: Operator) -> Response:
        stream = live.fragments("overview", overview_fragment, unavailable, every=refresh_s)
        return StreamingResponse(stream, media_type=live.MEDIA_TYPE, headers=live.HEADERS)

    # --- messages -----------------------------------------------------------------------

    @ui.get("/messages", name="ui_messages")
    async def messages(
        request: Request,
        who: Operator,
        id: Annotated[str, Query(max_length=MAX_IDENT)] = "",
    ) -> Response:
        ident = id.strip()
        traces = await consoles().trace(ident) if ident else ()
        return page(request, "messages.html", who, "messages", ident=ident, traces=traces)

    # --- dead letters -------------------------------------------------------------------

    async def queue_page(
        request: Request, who: str, template: str, direction: Direction, participant: str
    ) -> Response:
        """A page about one queue's dead letters (the listing, the purge confirmation)."""
        letters = await consoles().dead_letters(direction, participant)
        return page(
            request,
            template,
            who,
            "dead-letters",
            direction=direction,
            participant=participant,
            letters=letters,
        )

    @ui.get("/dead-letters", name="ui_dead_letters")
    async def dead_letter_queues(request: Request, who: Operator) -> Response:
        return page(
            request, "dead_letters.html", who, "dead-letters", queues=await consoles().queues()
        )

    @ui.get("/dead-letters/{direction}/{participant}", name="ui_dead_letter_queue")
    async def dead_letter_queue(
        request: Request, who: Operator, direction: Direction, participant: str
    ) -> Response:
        return await queue_page(request, who, "dead_letter_queue.html", direction, participant)

    @ui.get("/dead-letters/{direction}/{participant}/messages/{message_id}")
    async def dead_letter(
        request: Request, who: Operator, direction: Direction, participant: str, message_id: str
    ) -> Response:
        detail = await consoles().dead_letter(direction, participant, message_id)
        return page(
            request,
            "dead_letter.html",
            who,
            "dead-letters",
            detail=detail,
            xml=detail.xml.decode("utf-8", errors="replace"),
        )

    @ui.post("/dead-letters/{direction}/{participant}/replay")
    async def replay(
        request: Request,
        who: Acting,
        direction: Direction,
        participant: str,
        message_id: Annotated[list[str] | None, Form()] = None,
    ) -> Response:
        report = await consoles().replay(direction, participant, message_id or None, operator=who)
        log.info(
            "ui_replay",
            operator=who,
            queue=f"{direction}.{participant}",
            replayed=len(report.replayed),
            skipped=len(report.skipped),
        )
        return page(
            request,
            "replayed.html",
            who,
            "dead-letters",
            direction=direction,
            participant=participant,
            report=report,
        )

    @ui.get("/dead-letters/{direction}/{participant}/purge", name="ui_purge_confirm")
    async def purge_confirm(
        request: Request, who: Operator, direction: Direction, participant: str
    ) -> Response:
        return await queue_page(request, who, "purge_confirm.html", direction, participant)

    @ui.post("/dead-letters/{direction}/{participant}/purge")
    async def purge(
        request: Request,
        who: Acting,
        direction: Direction,
        participant: str,
        confirm: Annotated[str, Form()] = "",
    ) -> Response:
        if confirm != participant:
            # Not confirmed on the confirmation page: go there.
            return RedirectResponse(
                request.url_for(
                    "ui_purge_confirm", direction=direction.value, participant=participant
                ),
                status_code=303,
            )
        purged = await consoles().purge(direction, participant, operator=who)
        log.info("ui_purge", operator=who, queue=f"{direction}.{participant}", purged=purged)
        return page(
            request,
            "purged.html",
            who,
            "dead-letters",
            direction=direction,
            participant=participant,
            purged=purged,
        )

    # --- agencies -----------------------------------------------------------------------

    @ui.get("/agencies", name="ui_agencies")
    async def agencies(request: Request, who: Operator) -> Response:
        overview = await consoles().overview()
        return page(
            request,
            "agencies.html",
            who,
            "agencies",
            agencies=overview.agencies,
            target=overview.availability_target,
        )

    @ui.post("/agencies/{participant}/check")
    async def check(request: Request, who: Acting, participant: str) -> Response:
        agency = await consoles().check_agency(participant)
        if "hx-request" in request.headers:
            target = (await consoles().overview()).availability_target
            return HTMLResponse(
                _templates.render(
                    "_agency_row.html",
                    agency=agency,
                    target=target,
                    checks=True,
                    csrf=session.csrf_token(request),
                )
            )
        return RedirectResponse(
            str(request.url_for("ui_agencies")) + f"#agency-{participant}", status_code=303
        )

    return ui
