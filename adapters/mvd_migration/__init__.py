"""MVD migration service: its native XML-over-HTTP interface, a mock of it, and its data.

The migration service does not speak the bus protocol. It takes one ``<Query>`` per
``POST /query`` and answers one ``<Answer>`` (schema
``xsd/agencies/mvd_migration/mvd-migration-1.0.xsd``, namespace
``urn://mvd.example/migration/1.0``).

* :mod:`.native` - the namespace, the compiled schema, the legacy codes, query builders;
* :mod:`.dataset` - the seeded, deterministic records the mock answers from;
* :mod:`.answers` - how the mock turns a query into an answer;
* :mod:`.knobs` - latency, error rate, outage and malformed-answer switches;
* :mod:`.mock_service` - the FastAPI app and ``python -m adapters.mvd_migration.mock_service``.
"""
