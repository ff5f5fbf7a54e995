"""A typed async client of the ops REST API (``/api/v1/ops``, ``/api/v1/kpi``), as one
operator (bearer token from ``SMEVBUS_OPS_TOKENS``): what the ``smevbus queues``,
``kpi`` and ``dlq purge`` commands read. Answers are parsed with the server's wire models
(:mod:`gateway.wire.ops`); errors raised as :mod:`gateway.client.api` says.

    async with OpsClient("http://gateway:8080", token) as ops:
        queues = await ops.queues()
"""

from __future__ import annotations

from datetime import datetime
from urllib.parse import quote

from gateway.client.api import ApiClient
from gateway.wire.ops import (
    KPI_PATH,
    OPS_PREFIX,
    AgencyList,
    AgencyOut,
    DeadLetterDetailOut,
    DeadLetterList,
    KpiOut,
    OverviewOut,
    PurgeOut,
    QueueList,
    ReplayOut,
    TraceList,
)


def _letters(direction: str, participant: str) -> str:
    return f"{OPS_PREFIX}/dead-letters/{quote(direction)}/{quote(participant)}"


class OpsClient(ApiClient):
    async def overview(self) -> OverviewOut:
        return await self._call(OverviewOut, "GET", f"{OPS_PREFIX}/overview")

    async def queues(self) -> QueueList:
        return await self._call(QueueList, "GET", f"{OPS_PREFIX}/queues")

    async def agencies(self) -> AgencyList:
        return await self._call(AgencyList, "GET", f"{OPS_PREFIX}/agencies")

    async def check_agency(self, participant: str) -> AgencyOut:
        url = f"{OPS_PREFIX}/agencies/{quote(participant)}/check"
        return await self._call(AgencyOut, "POST", url)

    async def trace(self, ident: str) -> TraceList:
        return await self._call(TraceList, "GET", f"{OPS_PREFIX}/trace/{quote(ident)}")

    async def dead_letters(
        self, direction: str, participant: str, *, limit: int = 100
    ) -> DeadLetterList:
        url = _letters(direction, participant)
        return await self._call(DeadLetterList, "GET", url, params={"limit": str(limit)})

    async def dead_letter(
        self, direction: str, participant: str, message_id: str
    ) -> DeadLetterDetailOut:
        url = f"{_letters(direction, participant)}/{quote(message_id)}"
        return await self._call(DeadLetterDetailOut, "GET", url)

    async def replay(
        self, direction: str, participant: str, message_ids: list[str] | None = None
    ) -> ReplayOut:
        url = f"{_letters(direction, participant)}/replay"
        return await self._call(ReplayOut, "POST", url, json={"message_ids": message_ids})

    async def purge(self, direction: str, participant: str) -> PurgeOut:
        return await self._call(PurgeOut, "POST", f"{_letters(direction, participant)}/purge")

    async def kpi(
        self,
        *,
        start: datetime | None = None,
        end: datetime | None = None,
        agency: str | None = None,
    ) -> KpiOut:
        """KPIs of ``[start, end)`` (the server's defaults: the day up to now)."""
        params = {
            name: value
            for name, value in (
                ("from", None if start is None else start.isoformat()),
                ("to", None if end is None else end.isoformat()),
                ("agency", agency),
            )
            if value is not None
        }
        return await self._call(KpiOut, "GET", KPI_PATH, params=params)
