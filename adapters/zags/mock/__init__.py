"""A mock ZAGS civil registry: the agency's own SOAP interface over a seeded data set.

``create_mock_zags(config)`` builds the FastAPI app; ``python -m
adapters.zags.mock_service --port N`` runs it as a process.
"""

from adapters.zags.mock.app import LATENCY_HEADER, create_mock_zags
from adapters.zags.mock.config import KnobsUpdate, MockZagsConfig

__all__ = ["LATENCY_HEADER", "KnobsUpdate", "MockZagsConfig", "create_mock_zags"]
