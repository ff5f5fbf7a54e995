"""What the typed REST clients share: an httpx client with the bearer token, and answers
parsed with the server's wire models or raised as the errors they carry.

Every ``application/problem+json`` answer is raised as the matching
:class:`~gateway.core.errors.SmevbusError` subclass (found by the problem's ``code``; an
unknown code becomes :class:`~gateway.core.errors.InternalError`), with the problem's
``context`` as the error's ``detail``. A gateway that cannot be reached, or answers
something that is not the API's, is an ``InternalError`` too.
"""

from __future__ import annotations

from types import TracebackType
from typing import Any, Self, TypeVar

import httpx
from pydantic import BaseModel, ValidationError

from gateway.core.errors import InternalError, SmevbusError, error_class
from gateway.wire.rest import PROBLEM_MEDIA_TYPE, Problem

M = TypeVar("M", bound=BaseModel)


def error_from_problem(problem: Problem) -> SmevbusError:
    """The typed error a problem+json body stands for (its ``context`` as ``detail``)."""
    cls = error_class(problem.code)
    context = dict(problem.context or {})
    if cls is None:
        return InternalError(problem.detail, problem_code=problem.code, **context)
    return cls(problem.detail, **context)


class ApiClient:
    """One gateway's REST API with a bearer ``token``; ``transport`` replaces the network
    (``httpx.ASGITransport(app=...)`` in tests). Use as an async context manager."""

    def __init__(
        self,
        base_url: str,
        token: str,
        *,
        transport: httpx.AsyncBaseTransport | None = None,
        timeout: float = 30.0,
    ) -> None:
        self.base_url = base_url
        self._http = httpx.AsyncClient(
            base_url=base_url,
            transport=transport,
            timeout=timeout,
            headers={"Authorization": f"Bearer {token}", "Accept": "application/json"},
        )

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.aclose()

    async def aclose(self) -> None:
        await self._http.aclose()

    async def _call(self, model: type[M], method: str, url: str, **kwargs: Any) -> M:
        try:
            response = await self._http.request(method, url, **kwargs)
        except httpx.HTTPError as exc:
            raise InternalError(
                f"cannot reach the gateway at {self.base_url}: {exc}", url=self.base_url
            ) from exc
        if response.is_success:
            try:
                return model.model_validate_json(response.content)
            except ValidationError as exc:
                raise InternalError(
                    f"the gateway answered {method} {url} with an unexpected body",
                    status=response.status_code,
                ) from exc
        raise _error_of(response)


def _error_of(response: httpx.Response) -> SmevbusError:
    media_type = response.headers.get("content-type", "").split(";")[0].strip()
    if media_type in (PROBLEM_MEDIA_TYPE, "application/json"):
        try:
            return error_from_problem(Problem.model_validate_json(response.content))
        except ValidationError:
            pass
    return InternalError(
        f"the gateway answered HTTP {response.status_code} without a problem report",
        status=response.status_code,
    )
