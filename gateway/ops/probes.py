"""Can the bus reach an agency now? A GET of its adapter's or its own health endpoint.

The URLs come from ``SMEVBUS_AGENCY_PROBES`` (participant -> URL); a 2xx answer
within the timeout means reachable. The result says what was found, in words an
operator reads on the agencies page: ``"200 in 12 ms"``, ``"HTTP 503 in 4 ms"``,
``"no answer within 2 s"``, ``"connection refused"``.
"""

from __future__ import annotations

import time
from collections.abc import Mapping
from dataclasses import dataclass

import aiohttp


@dataclass(frozen=True, slots=True)
class ProbeResult:
    reachable: bool | None
    detail: str


NOT_CONFIGURED = ProbeResult(None, "no probe URL configured (SMEVBUS_AGENCY_PROBES)")


class AgencyProbes:
    def __init__(self, urls: Mapping[str, str], *, timeout_s: float) -> None:
        self.urls = dict(urls)
        self.timeout_s = timeout_s

    async def check(self, participant: str) -> ProbeResult:
        url = self.urls.get(participant)
        if url is None:
            return NOT_CONFIGURED
        started = time.perf_counter()
        timeout = aiohttp.ClientTimeout(total=self.timeout_s)
        try:
            async with (
                aiohttp.ClientSession(timeout=timeout) as session,
                session.get(url, allow_redirects=False) as response,
            ):
                status = response.status
        except TimeoutError:
            return ProbeResult(False, f"no answer within {self.timeout_s:g} s")
        except aiohttp.ClientConnectorError as exc:
            return ProbeResult(False, exc.strerror or str(exc) or "cannot connect")
        except aiohttp.ClientError as exc:
            return ProbeResult(False, str(exc) or type(exc).__name__)
        ms = round((time.perf_counter() - started) * 1000)
        if 200 <= status < 300:
            return ProbeResult(True, f"{status} in {ms} ms")
        return ProbeResult(False, f"HTTP {status} in {ms} ms")
