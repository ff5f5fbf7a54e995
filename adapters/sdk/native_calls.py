"""Classify failures of an agency's native interface (aiohttp, httpx, zeep, lxml) for the kit.

Wrap every call of the agency, and the parsing of its answer, in :func:`agency_call`::

    with agency_call("FindBirthRecord"):
        answer = await http.post(url, content=query)
        answer.raise_for_status()
        root = etree.fromstring(answer.content, parser)

Inside it, client-library exceptions become the two the runner understands:

* :class:`~adapters.sdk.adapter.AgencyUnavailable` (retried, then ``AGENCY_UNAVAILABLE``):
  connection refused or reset, DNS failure, timeouts, HTTP 5xx without a SOAP Fault;
* :class:`~adapters.sdk.adapter.AgencyError` (``FAILURE``): HTTP 4xx, a SOAP Fault,
  an answer that is not well-formed XML or does not match the agency's WSDL.

Outside :func:`agency_call` the runner still recognizes connection failures and
timeouts (:func:`unreachable_reason`), which are never the adapter's own bug; a
``XMLSyntaxError`` there is ambiguous and is treated as a bug in the adapter.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

import aiohttp
import httpx
import zeep.exceptions
from lxml import etree

from adapters.sdk.adapter import AgencyError, AgencyUnavailable


@contextmanager
def agency_call(what: str) -> Iterator[None]:
    """Translate native-call failures of ``what`` (an operation name, for messages)."""
    try:
        yield
    except (AgencyUnavailable, AgencyError):
        raise
    except Exception as exc:
        translated = translate(exc, what)
        if translated is None:
            raise
        raise translated from exc


def translate(exc: BaseException, what: str) -> AgencyUnavailable | AgencyError | None:
    """The kit's error for a failure of the agency call ``what``, or None if not one."""
    reason = unreachable_reason(exc)
    if reason is not None:
        return AgencyUnavailable(f"{what}: {reason}", operation=what)
    status = _http_status(exc)
    if status is not None:
        return status_error(what, status)
    if isinstance(exc, zeep.exceptions.Fault):
        return AgencyError(f"{what}: SOAP Fault {exc.code}: {exc.message}", operation=what)
    if isinstance(
        exc,
        etree.XMLSyntaxError
        | zeep.exceptions.XMLSyntaxError
        | zeep.exceptions.XMLParseError
        | zeep.exceptions.UnexpectedElementError
        | zeep.exceptions.ValidationError,
    ):
        return AgencyError(f"{what}: malformed answer from the agency: {exc}", operation=what)
    return None


def status_error(what: str, status: int) -> AgencyUnavailable | AgencyError:
    """The kit's error for an answer with HTTP ``status`` (not 2xx): 5xx may pass."""
    message = f"{what}: the agency answered HTTP {status}"
    if status >= 500:
        return AgencyUnavailable(message, status=status)
    return AgencyError(message, status=status)


def unreachable_reason(exc: BaseException) -> str | None:
    """Why the agency could not be reached, if ``exc`` says so; None otherwise."""
    if isinstance(exc, TimeoutError | httpx.TimeoutException):
        return "no answer in time"
    if isinstance(
        exc,
        aiohttp.ClientConnectionError
        | aiohttp.ClientPayloadError
        | httpx.TransportError
        | ConnectionError,
    ):
        return f"agency unreachable ({type(exc).__name__}: {exc})"
    return None


def _http_status(exc: BaseException) -> int | None:
    if isinstance(exc, aiohttp.ClientResponseError):
        return exc.status
    if isinstance(exc, httpx.HTTPStatusError):
        return exc.response.status_code
    if isinstance(exc, zeep.exceptions.TransportError):
        status = getattr(exc, "status_code", None)
        return status if isinstance(status, int) and status > 0 else 502
    return None
