"""The bus's queues as an operator sees them: :func:`read_queues`.

Per participant queue (``requests.<P>``, ``responses.<P>``):

* ready / unacked / consumers from RabbitMQ's management HTTP API when it is configured
  (``SMEVBUS_RABBITMQ_MANAGEMENT_URL``: one request for every queue), otherwise from
  the transport itself (on RabbitMQ passive declares, which do not tell unacked; the
  memory transport knows all three);
* dead letters from the transport (the depth of the queue's dead-letter queue);
* the age of the oldest message from the journal: the oldest message journaled
  ``ACCEPTED``, ``QUEUED`` or ``DELIVERED`` (not settled) per recipient queue. A
  published message may stay ``ACCEPTED`` for a second (:mod:`gateway.router.marks`),
  and a request an adapter consumed by push stays ``ACCEPTED`` or ``QUEUED`` until its
  answer arrives, so the age counts how long the oldest request has waited for its
  agency.

Nothing here is on a message's path: the samplers (:mod:`gateway.ops.samplers`) and
the operator's console call it; the journal reads go through their own connections
(:func:`gateway.ops.kpi_queries.ops_database`).
"""

from __future__ import annotations

import asyncio
import base64
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any
from urllib.parse import quote

import aiohttp
import yarl

from gateway.ops.console_api import QueueView
from gateway.ops.kpi_queries import KpiDatabase, seconds_between
from gateway.transport.base import Direction, QueueCounts, Transport
from gateway.transport.topology import queue_name


@dataclass(frozen=True, slots=True)
class BrokerQueue:
    """One queue as the management API reports it."""

    ready: int
    unacked: int
    consumers: int


class ManagementApi:
    """RabbitMQ's management HTTP API (``GET /api/queues/<vhost>``), read only.

    ``url`` is the API's base (``http://rabbitmq:15672``); its user and password, if it
    names none, are those of ``amqp_url``, whose virtual host is the one read."""

    def __init__(self, url: str, amqp_url: str, *, timeout: float = 5.0) -> None:
        base, amqp = yarl.URL(url), yarl.URL(amqp_url)
        user = base.user or amqp.user or "guest"
        password = base.password or amqp.password or "guest"
        credentials = base64.b64encode(f"{user}:{password}".encode()).decode("ascii")
        self._headers = {"Authorization": f"Basic {credentials}"}
        vhost = amqp.path[1:] if len(amqp.path) > 1 else "/"
        self._url = str(base.with_user(None).with_path("")).rstrip("/") + (
            f"/api/queues/{quote(vhost, safe='')}"
        )
        self._timeout = aiohttp.ClientTimeout(total=timeout)

    async def queues(self) -> dict[str, BrokerQueue]:
        """Every queue of the virtual host by its broker name; raises on any failure."""
        params = {"columns": "name,messages_ready,messages_unacknowledged,consumers"}
        async with (
            aiohttp.ClientSession(timeout=self._timeout, headers=self._headers) as session,
            session.get(self._url, params=params) as response,
        ):
            response.raise_for_status()
            body: list[dict[str, Any]] = await response.json()
        return {
            str(q["name"]): BrokerQueue(
                ready=int(q.get("messages_ready") or 0),
                unacked=int(q.get("messages_unacknowledged") or 0),
                consumers=int(q.get("consumers") or 0),
            )
            for q in body
        }


def _oldest_sql(dialect: str) -> str:
    age = seconds_between(dialect, ":now", "MIN(created_at)")
    return f"""
    SELECT kind, recipient, {age} AS age_s
    FROM messages
    WHERE state IN ('ACCEPTED', 'QUEUED', 'DELIVERED')
    GROUP BY kind, recipient"""  # noqa: S608 (only constants are interpolated)


async def oldest_unsettled(db: KpiDatabase, now: datetime) -> dict[str, float]:
    """Queue (``requests.ZAGS``) -> age in seconds of its oldest message journaled
    ``ACCEPTED``, ``QUEUED`` or ``DELIVERED``; queues without one are absent."""
    rows = await db.fetch(_oldest_sql(db.dialect), {"now": now})
    direction = {"request": Direction.REQUESTS, "response": Direction.RESPONSES}
    return {
        f"{direction[row['kind']].value}.{row['recipient']}": max(float(row["age_s"]), 0.0)
        for row in rows
        if row["kind"] in direction and row["age_s"] is not None
    }


async def read_queues(
    transport: Transport,
    participants: Iterable[str],
    *,
    now: datetime,
    journal: KpiDatabase | None = None,
    management: ManagementApi | None = None,
) -> tuple[QueueView, ...]:
    """Both queues of every participant, requests first per participant.

    ``journal``: where the oldest ages come from (``None``: ages unknown);
    ``management``: the broker's figures come from its API instead of the transport
    (dead letters still from the transport). Raises whatever a source raises."""
    pairs = [(d, p) for p in participants for d in Direction]
    broker: Mapping[str, BrokerQueue] = {} if management is None else await management.queues()
    counts: list[QueueCounts] = await asyncio.gather(*(transport.counts(d, p) for d, p in pairs))
    ages = {} if journal is None else await oldest_unsettled(journal, now)
    views = []
    for (direction, participant), count in zip(pairs, counts, strict=True):
        name = f"{direction.value}.{participant}"
        known = broker.get(queue_name(direction, participant)) if management else None
        views.append(
            QueueView(
                direction=direction,
                participant=participant,
                ready=count.ready if known is None else known.ready,
                unacked=count.unacked if known is None else known.unacked,
                consumers=count.consumers if known is None else known.consumers,
                oldest_age_s=None if journal is None else ages.get(name, 0.0),
                dead_letters=count.dead_letters,
            )
        )
    return tuple(views)
