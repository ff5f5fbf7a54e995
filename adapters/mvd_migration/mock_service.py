"""A mock of the MVD migration service: a real HTTP server speaking its native XML.

``POST /query`` takes one ``<Query>`` and answers one ``<Answer>``
(``xsd/agencies/mvd_migration/mvd-migration-1.0.xsd``) from the seeded data set in
:mod:`adapters.mvd_migration.dataset`:

* 200 - ``<PassportStatus>`` or ``<Residences>``;
* 400 ``FORMAT_ERROR`` - not well-formed, DTD/entities, too large, not a ``<Query>``,
  or not valid against the schema;
* 500 ``SYSTEM_ERROR`` - injected by ``error_rate``;
* 503 ``SERVICE_UNAVAILABLE`` - injected by ``outage`` (with ``Retry-After``).

``GET /health`` answers 200 while the process runs, whatever the knobs say (it
reports them). ``GET /_control`` shows the knobs and the number of queries received;
``POST /_control`` with JSON (:class:`~adapters.mocks.knobs.ControlUpdate`)
changes them on the running process. "Connection refused" is the process stopped.

Run it as a process::

    python -m adapters.mvd_migration.mock_service --port 8701 [--host 0.0.0.0]
        [--latency-ms N] [--error-rate R] [--outage] [--malformed] [--seed S]
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime

from fastapi import FastAPI
from lxml import etree

from adapters.mocks.app import mock_app
from adapters.mocks.knobs import Knobs
from adapters.mocks.knobs import MockConfig as MockMvdConfig
from adapters.mocks.query_route import NativeService, Refusal, add_query_route
from adapters.mocks.serve import run_mock
from adapters.mvd_migration.answers import answer_query, error_answer
from adapters.mvd_migration.dataset import Dataset, build_dataset
from adapters.mvd_migration.native import ErrorCode, native_schema, q

_ERRORS = {
    Refusal.UNAVAILABLE: ErrorCode.SERVICE_UNAVAILABLE,
    Refusal.INTERNAL: ErrorCode.SYSTEM_ERROR,
    Refusal.BAD_QUERY: ErrorCode.FORMAT_ERROR,
}


def _refuse(why: Refusal, message: str, now: datetime) -> tuple[etree._Element, int]:
    code = _ERRORS[why]
    return error_answer(code, message, now=now), code.http_status


def create_mock_mvd(config: MockMvdConfig | None = None, dataset: Dataset | None = None) -> FastAPI:
    """The mock service as an ASGI app; ``dataset`` defaults to :func:`build_dataset`."""
    knobs = Knobs(config or MockMvdConfig())
    records = dataset if dataset is not None else build_dataset()
    app = mock_app("Mock MVD migration service", knobs, len(records))
    app.state.dataset = records
    service = NativeService(
        query=q("Query"),
        schema=native_schema,
        answer=lambda query, now: answer_query(query, records, now=now),
        refuse=_refuse,
        unavailable_message="Сервис временно недоступен (технические работы)",
        internal_message="Внутренняя ошибка системы, повторите запрос",
    )
    add_query_route(app, "/query", knobs, service)
    return app


def main(argv: Sequence[str] | None = None) -> None:
    run_mock(
        prog="python -m adapters.mvd_migration.mock_service",
        description="Mock MVD migration service (native XML over HTTP).",
        default_port=8701,
        make_app=create_mock_mvd,
        argv=argv,
    )


if __name__ == "__main__":
    main()
