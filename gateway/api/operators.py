"""Operator authentication for the ops surfaces (``/ui``, ``/api/v1/ops``, ``/api/v1/kpi``,
``/metrics``).

Tokens come from ``SMEVBUS_OPS_TOKENS`` (token -> operator name). A request presents
one as ``Authorization: Bearer <token>`` or in the :data:`COOKIE` cookie the ``/ui``
login form sets. With no operator tokens configured every ops surface is closed.
"""

from __future__ import annotations

from collections.abc import Mapping

from fastapi import Request

from gateway.api.auth import TokenAuth
from gateway.core.errors import Unauthenticated

#: The cookie the /ui login form sets (HttpOnly, SameSite=Strict, Secure over HTTPS).
COOKIE = "smevbus_ops"


class OperatorAuth:
    """Who the operator is, from a bearer token or the login cookie."""

    def __init__(self, tokens: Mapping[str, str]) -> None:
        self._tokens = TokenAuth(tokens) if tokens else None

    @property
    def configured(self) -> bool:
        return self._tokens is not None

    def operator_for(self, request: Request) -> str:
        """The operator ``request`` authenticates; raises ``Unauthenticated`` (401)."""
        header = request.headers.get("authorization", "")
        scheme, _, credentials = header.partition(" ")
        token = credentials.strip() if scheme.lower() == "bearer" else None
        return self.operator_of(token or request.cookies.get(COOKIE))

    def operator_of(self, token: str | None) -> str:
        """The operator ``token`` names (the /ui login form checks one before setting the
        cookie); raises ``Unauthenticated`` (401)."""
        if self._tokens is None:
            raise Unauthenticated("no operator tokens are configured (SMEVBUS_OPS_TOKENS)")
        return self._tokens.participant_for(token)
