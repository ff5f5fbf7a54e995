"""``smevbus``: the command line of the bus (typer).

One module per concern, each adding its commands to :data:`app`: :mod:`.keys` (dev PKI,
sign, verify), :mod:`.serve` (demo, serve, adapter), :mod:`.deadletters` (dlq),
:mod:`.portal` (the REST API: submit, status, trace), :mod:`.ops` (the ops REST API:
queues, kpi, dlq purge).
"""

# isort: off
# ``smevbus --help`` lists the commands in the order these modules are imported.
from gateway.cli import keys, serve, deadletters, portal, ops
from gateway.cli.app import app

# isort: on

__all__ = ["app", "deadletters", "keys", "ops", "portal", "serve"]
