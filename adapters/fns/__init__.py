"""FNS (tax service) INN lookup: its native XML-over-HTTP interface, a mock, the adapter.

The tax service does not speak the bus protocol. It takes one ``<InnQuery>`` per
``POST /inn`` and answers one ``<InnReply>`` (schema ``xsd/agencies/fns/fns-inn-1.0.xsd``,
namespace ``urn://fns.example/inn/1.0``). Built only with the adapter kit, following
``docs/adding-an-agency.md`` step by step:

* :mod:`.native` - the namespace, the compiled schema, fault codes, the query builder;
* :mod:`.dataset` - the seeded, deterministic taxpayers the mock answers from;
* :mod:`.mock_service` - the mock (FastAPI) and ``python -m adapters.fns.mock_service``;
* :mod:`.mapping` - pure mapping between the bus INN type and the native XML;
* :mod:`.adapter` - the kit adapter: one handler, one ``httpx.AsyncClient``.
"""
