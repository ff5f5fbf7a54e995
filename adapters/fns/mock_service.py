"""A mock of the FNS INN service: a real HTTP server speaking its native XML.

``POST /inn`` takes one ``<InnQuery>`` and answers one ``<InnReply>``
(``xsd/agencies/fns/fns-inn-1.0.xsd``) from the seeded data set in
:mod:`adapters.fns.dataset`:

* 200 - ``<Inn>`` or ``<NotFound/>``;
* 400 ``BAD_QUERY`` - not well-formed, DTD/entities, too large, not an ``<InnQuery>``,
  or not valid against the schema;
* 500 ``INTERNAL`` - injected by ``error_rate``;
* 503 ``UNAVAILABLE`` - injected by ``outage`` (with ``Retry-After``).

The knobs are the shared mock knobs (:mod:`adapters.mocks.knobs`: ``latency_ms``,
``error_rate``, ``outage``, ``malformed``, ``seed``): ``GET /_control`` shows them,
``POST /_control`` changes them on the running process. ``GET /health`` answers 200
while the process runs. "Connection refused" is the process stopped.

Run it as a process::

    python -m adapters.fns.mock_service --port 8702 [--host 0.0.0.0]
        [--latency-ms N] [--error-rate R] [--outage] [--malformed] [--seed S]
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from datetime import UTC, date, datetime

from fastapi import FastAPI, Request, Response
from lxml import etree

from adapters.fns.dataset import Dataset, build_dataset
from adapters.fns.native import (
    CONTENT_TYPE,
    NSMAP,
    FaultCode,
    native_schema,
    q,
    to_bytes,
)
from adapters.mocks.app import mock_app
from adapters.mocks.knobs import Knobs, MockConfig
from adapters.mocks.serve import run_mock
from gateway.core.errors import InvalidContent, SmevbusError
from gateway.xml.parse import parse_secure
from gateway.xml.text import find_text

MAX_QUERY_BYTES = 64 * 1024
"""A query is a few hundred bytes; anything past this is refused as BAD_QUERY."""
RETRY_AFTER_S = 30


def _reply(query_id: str | None, now: datetime | None) -> etree._Element:
    root = etree.Element(q("InnReply"), nsmap=NSMAP)
    if query_id:
        root.set("queryId", query_id)
    if now is not None:
        root.set("answeredAt", now.isoformat(timespec="seconds"))
    return root


def fault_reply(
    code: FaultCode, message: str, *, query_id: str | None = None, now: datetime | None = None
) -> etree._Element:
    """``<InnReply><Fault code=...>message</Fault></InnReply>``."""
    root = _reply(query_id, now)
    etree.SubElement(root, q("Fault"), code=code.value).text = message
    return root


def answer_query(
    query: etree._Element, dataset: Dataset, *, now: datetime | None = None
) -> etree._Element:
    """The ``<InnReply>`` to a schema-valid ``<InnQuery>``: ``<Inn>`` or ``<NotFound/>``."""
    root = _reply(query.get("queryId"), now)
    series, _, number = find_text(query, q("Doc"), "").replace(" ", "", 1).partition(" ")
    try:
        born: date | None = date.fromisoformat(find_text(query, q("DataRozhd"), "")[:10])
    except ValueError:  # xs:date beyond what Python holds: nobody is born then
        born = None
    fio = f"{q('FIO')}/"
    person = (
        dataset.find(
            find_text(query, fio + q("Familiya"), ""),
            find_text(query, fio + q("Imya"), ""),
            find_text(query, fio + q("Otchestvo")),
            born,
            series,
            number,
        )
        if born is not None
        else None
    )
    if person is None:
        etree.SubElement(root, q("NotFound"))
        return root
    inn = etree.SubElement(
        root, q("Inn"), taxOffice=person.tax_office, assigned=person.assigned.isoformat()
    )
    inn.text = person.inn
    return root


def _xml(element: etree._Element, status: int = 200, **headers: str) -> Response:
    return Response(to_bytes(element), status_code=status, media_type=CONTENT_TYPE, headers=headers)


def _fault(code: FaultCode, message: str, **headers: str) -> Response:
    return _xml(fault_reply(code, message, now=datetime.now(UTC)), code.http_status, **headers)


def _read_query(body: bytes) -> etree._Element:
    """The validated ``<InnQuery>``, or SmevbusError (InvalidContent / SchemaViolation)."""
    root = parse_secure(body, max_bytes=MAX_QUERY_BYTES)
    if root.tag != q("InnQuery"):
        raise InvalidContent(f"expected <InnQuery> in the native namespace, got <{root.tag}>")
    native_schema().validate(root, "query")
    return root


def create_mock_fns(config: MockConfig | None = None, dataset: Dataset | None = None) -> FastAPI:
    """The mock service as an ASGI app; ``dataset`` defaults to :func:`build_dataset`."""
    knobs = Knobs(config or MockConfig())
    records = dataset if dataset is not None else build_dataset()
    native_schema()  # compile at start-up, not on the first query
    app = mock_app("Mock FNS INN service", knobs, len(records))
    app.state.dataset = records

    @app.post("/inn")
    async def inn(request: Request) -> Response:
        knobs.queries += 1
        config = knobs.config
        fail = knobs.draw_error()
        if config.outage:
            retry_after = {"Retry-After": str(RETRY_AFTER_S)}
            return _fault(FaultCode.UNAVAILABLE, "Сервис временно недоступен", **retry_after)
        if config.latency_ms:
            await asyncio.sleep(config.latency_ms / 1000)
        if fail:
            return _fault(FaultCode.INTERNAL, "Внутренняя ошибка, повторите запрос")
        declared = request.headers.get("content-length", "0")
        if declared.isdigit() and int(declared) > MAX_QUERY_BYTES:
            return _fault(FaultCode.BAD_QUERY, f"query is larger than {MAX_QUERY_BYTES} bytes")
        try:
            parsed = _read_query(await request.body())
        except SmevbusError as exc:
            return _fault(FaultCode.BAD_QUERY, f"{exc.code}: {exc.message}")
        answer = to_bytes(answer_query(parsed, records, now=datetime.now(UTC)))
        if config.malformed:
            answer = answer[: len(answer) // 2]
        return Response(answer, media_type=CONTENT_TYPE)

    return app


def main(argv: Sequence[str] | None = None) -> None:
    run_mock(
        prog="python -m adapters.fns.mock_service",
        description="Mock FNS INN service (native XML over HTTP).",
        default_port=8702,
        make_app=create_mock_fns,
        argv=argv,
    )


if __name__ == "__main__":
    main()
