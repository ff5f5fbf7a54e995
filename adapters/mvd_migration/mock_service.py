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

import asyncio
from collections.abc import Sequence
from datetime import UTC, datetime

from fastapi import FastAPI, Request, Response
from lxml import etree

from adapters.mocks.app import mock_app
from adapters.mocks.knobs import Knobs
from adapters.mocks.knobs import MockConfig as MockMvdConfig
from adapters.mocks.serve import run_mock
from adapters.mvd_migration.answers import answer_query, error_answer
from adapters.mvd_migration.dataset import Dataset, build_dataset
from adapters.mvd_migration.native import CONTENT_TYPE, ErrorCode, native_schema, q, to_bytes
from gateway.core.errors import InvalidContent, SmevbusError
from gateway.xml.parse import parse_secure

MAX_QUERY_BYTES = 64 * 1024
"""A query is a few hundred bytes; anything past this is refused as FORMAT_ERROR."""
RETRY_AFTER_S = 30


def _xml(element: etree._Element, status: int = 200, **headers: str) -> Response:
    return Response(to_bytes(element), status_code=status, media_type=CONTENT_TYPE, headers=headers)


def _error(code: ErrorCode, message: str, query_id: str | None = None, **headers: str) -> Response:
    now = datetime.now(UTC)
    return _xml(
        error_answer(code, message, query_id=query_id, now=now), code.http_status, **headers
    )


def _read_query(body: bytes) -> etree._Element:
    """The validated ``<Query>``, or SmevbusError (InvalidContent / SchemaViolation / ...)."""
    root = parse_secure(body, max_bytes=MAX_QUERY_BYTES)
    if root.tag != q("Query"):
        raise InvalidContent(f"expected <Query> in the native namespace, got <{root.tag}>")
    native_schema().validate(root, "query")
    return root


def create_mock_mvd(config: MockMvdConfig | None = None, dataset: Dataset | None = None) -> FastAPI:
    """The mock service as an ASGI app; ``dataset`` defaults to :func:`build_dataset`."""
    knobs = Knobs(config or MockMvdConfig())
    records = dataset if dataset is not None else build_dataset()
    native_schema()  # compile at start-up, not on the first query
    app = mock_app("Mock MVD migration service", knobs, len(records))
    app.state.dataset = records

    @app.post("/query")
    async def query(request: Request) -> Response:
        knobs.queries += 1
        config = knobs.config
        fail = knobs.draw_error()
        if config.outage:
            return _error(
                ErrorCode.SERVICE_UNAVAILABLE,
                "Сервис временно недоступен (технические работы)",
                **{"Retry-After": str(RETRY_AFTER_S)},
            )
        if config.latency_ms:
            await asyncio.sleep(config.latency_ms / 1000)
        if fail:
            return _error(ErrorCode.SYSTEM_ERROR, "Внутренняя ошибка системы, повторите запрос")
        declared = request.headers.get("content-length", "0")
        if declared.isdigit() and int(declared) > MAX_QUERY_BYTES:
            return _error(ErrorCode.FORMAT_ERROR, f"query is larger than {MAX_QUERY_BYTES} bytes")
        try:
            parsed = _read_query(await request.body())
        except SmevbusError as exc:
            return _error(ErrorCode.FORMAT_ERROR, f"{exc.code}: {exc.message}")
        answer = to_bytes(answer_query(parsed, records, now=datetime.now(UTC)))
        if config.malformed:
            answer = answer[: len(answer) // 2]
        return Response(answer, media_type=CONTENT_TYPE)

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
