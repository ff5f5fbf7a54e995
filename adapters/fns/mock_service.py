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

from collections.abc import Sequence
from datetime import date, datetime

from fastapi import FastAPI
from lxml import etree

from adapters.fns.dataset import Dataset, build_dataset
from adapters.fns.native import NSMAP, FaultCode, native_schema, q
from adapters.mocks.app import mock_app
from adapters.mocks.knobs import Knobs, MockConfig
from adapters.mocks.query_route import NativeService, Refusal, add_query_route
from adapters.mocks.serve import run_mock
from gateway.xml.text import find_text


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


_FAULTS = {
    Refusal.UNAVAILABLE: FaultCode.UNAVAILABLE,
    Refusal.INTERNAL: FaultCode.INTERNAL,
    Refusal.BAD_QUERY: FaultCode.BAD_QUERY,
}


def _refuse(why: Refusal, message: str, now: datetime) -> tuple[etree._Element, int]:
    code = _FAULTS[why]
    return fault_reply(code, message, now=now), code.http_status


def create_mock_fns(config: MockConfig | None = None, dataset: Dataset | None = None) -> FastAPI:
    """The mock service as an ASGI app; ``dataset`` defaults to :func:`build_dataset`."""
    knobs = Knobs(config or MockConfig())
    records = dataset if dataset is not None else build_dataset()
    app = mock_app("Mock FNS INN service", knobs, len(records))
    app.state.dataset = records
    service = NativeService(
        query=q("InnQuery"),
        schema=native_schema,
        answer=lambda query, now: answer_query(query, records, now=now),
        refuse=_refuse,
        unavailable_message="Сервис временно недоступен",
        internal_message="Внутренняя ошибка, повторите запрос",
    )
    add_query_route(app, "/inn", knobs, service)
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
