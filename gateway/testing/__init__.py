"""What tests and benchmarks share, as a public part of the product (trio's habit).

* :mod:`gateway.testing.bus`: a whole bus in one process (memory transport, in-memory
  SQLite journal, a fake clock, a session dev PKI) with a signing client per
  participant;
* :mod:`gateway.testing.processes`: ``smevbus serve`` and our other processes as child
  processes, each gateway on its own RabbitMQ vhost and PostgreSQL database;
* :mod:`gateway.testing.chain`: the whole chain (gateway, mock agencies, adapters) as
  separate processes, as docker-compose runs it;
* :mod:`gateway.testing.journal`: one message's journal state and history, read
  straight from the journal (1.1's GetStatus hands out notices, not this).
"""
