"""Who is at the dashboard, and whether a form post really comes from it.

The operator is whoever :class:`~gateway.api.operators.OperatorAuth` finds: a bearer token
or the login cookie (which holds the operator's token). Without one, a page a browser
navigates to answers 303 to the login form; htmx requests, the event stream and other
clients get 401, which they can act on (a redirect would hand them the login page as if it
were the fragment they asked for).

Cross-site request forgery: the cookie is ``SameSite=Strict``, and every state-changing
post made with it must also carry the session's CSRF token (a hidden form field, or the
``X-CSRF-Token`` header htmx sends) and, if the browser says where it comes from
(``Origin``, ``Sec-Fetch-Site``), come from this site. The token is an HMAC of the
cookie's value, so every gateway process computes the same one and a page on another site
cannot. A post with a bearer token needs neither: no browser adds that header by itself.
"""

from __future__ import annotations

import hashlib
import hmac
from urllib.parse import urlsplit

from fastapi import Request, Response

from gateway.api.operators import COOKIE
from gateway.core.errors import AccessDenied

LOGIN_PATH = "/ui/login"
CSRF_FIELD = "csrf"
CSRF_HEADER = "x-csrf-token"
_CSRF_KEY = b"smevbus /ui csrf token"


def csrf_token(request: Request) -> str:
    """The token the session's forms carry; empty for a request without the cookie."""
    cookie = request.cookies.get(COOKIE)
    if not cookie:
        return ""
    return hmac.new(_CSRF_KEY, cookie.encode("utf-8"), hashlib.sha256).hexdigest()


def uses_bearer(request: Request) -> bool:
    scheme, _, credentials = request.headers.get("authorization", "").partition(" ")
    return scheme.lower() == "bearer" and bool(credentials.strip())


def check_same_origin(request: Request) -> None:
    """Refuse (403) a request the browser says comes from another site. The host is
    compared, not the scheme: behind a proxy that ends TLS the app sees ``http``."""
    origin = request.headers.get("origin")
    if origin is not None and urlsplit(origin).netloc != request.headers.get("host"):
        raise AccessDenied("the form was posted from another site")
    site = request.headers.get("sec-fetch-site")
    if site is not None and site not in ("same-origin", "none"):
        raise AccessDenied("the form was posted from another site")


async def check_csrf(request: Request) -> None:
    """Refuse (403) a cookie-authenticated post without this session's token."""
    if uses_bearer(request):
        return
    check_same_origin(request)
    expected = csrf_token(request)
    form = await request.form()
    presented = request.headers.get(CSRF_HEADER) or form.get(CSRF_FIELD)
    if not expected or not isinstance(presented, str):
        raise AccessDenied("the form has no CSRF token; reload the page")
    if not hmac.compare_digest(expected, presented):
        raise AccessDenied("the form's CSRF token is not this session's; reload the page")


def wants_page(request: Request) -> bool:
    """A browser navigating (303 to the login form fits), not htmx, SSE or an API client."""
    return "hx-request" not in request.headers and "text/html" in request.headers.get("accept", "")


def safe_next(target: str | None) -> str:
    """Where to go after logging in: a /ui path on this site, nothing else."""
    if (
        target
        and target.startswith("/ui")
        and not target.startswith(LOGIN_PATH)
        and "\\" not in target
        and "//" not in target
    ):
        return target
    return "/ui/"


def set_session(response: Response, request: Request, token: str) -> None:
    response.set_cookie(
        COOKIE,
        token,
        httponly=True,
        samesite="strict",
        secure=request.url.scheme == "https",
        path="/",
    )


def end_session(response: Response, request: Request) -> None:
    response.delete_cookie(
        COOKIE, httponly=True, samesite="strict", secure=request.url.scheme == "https", path="/"
    )
