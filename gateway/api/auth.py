"""REST API authentication: a bearer token names the calling portal (a participant).

Tokens come from :attr:`gateway.config.Settings.api_tokens` (token -> participant
mnemonic). A request without a usable ``Authorization: Bearer`` header is refused
with 401; a token whose participant is not allowed to use the API (``allowed``, for
instance "registered in the registry") with 403. Tokens are compared in constant
time: every configured token is compared (as SHA-256 digests, so lengths never leak)
and the loop never stops early.
"""

from __future__ import annotations

import hashlib
import hmac
from collections.abc import Callable, Mapping
from typing import Annotated

from fastapi import Depends
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer

from gateway.core.errors import AccessDenied, Unauthenticated

_bearer = HTTPBearer(
    auto_error=False,
    scheme_name="bearerToken",
    description="A token issued to a portal; it names the calling participant.",
)


def _digest(token: str) -> bytes:
    return hashlib.sha256(token.encode("utf-8")).digest()


class TokenAuth:
    """A FastAPI dependency returning the authenticated participant's mnemonic."""

    def __init__(
        self,
        tokens: Mapping[str, str],
        *,
        allowed: Callable[[str], bool] | None = None,
    ) -> None:
        for token, participant in tokens.items():
            if not token or not participant:
                raise ValueError("API tokens and their participants must be non-empty")
        self._tokens: tuple[tuple[bytes, str], ...] = tuple(
            (_digest(token), participant) for token, participant in tokens.items()
        )
        self._allowed = allowed

    def participant_for(self, token: str | None) -> str:
        """The participant ``token`` authenticates; raises 401/403 errors otherwise."""
        if not token:
            raise Unauthenticated("a bearer token is required (Authorization: Bearer ...)")
        presented = _digest(token)
        found: str | None = None
        for digest, participant in self._tokens:
            if hmac.compare_digest(digest, presented) and found is None:
                found = participant
        if found is None:
            raise Unauthenticated("the bearer token is not valid")
        if self._allowed is not None and not self._allowed(found):
            raise AccessDenied(f"participant {found} may not use the REST API", participant=found)
        return found

    async def __call__(
        self, credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(_bearer)]
    ) -> str:
        token = credentials.credentials if credentials is not None else None
        return self.participant_for(token)
