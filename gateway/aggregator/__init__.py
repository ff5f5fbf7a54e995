"""Service requests: one portal order fanned out to agencies, answers aggregated.

The pure parts live in :mod:`gateway.core` (catalogue, service lifecycle,
scatter-gather state); this package holds what touches XML (building each part's
request), the process that sends, correlates and persists (:class:`Aggregator`), and
the result callbacks to portals (:mod:`gateway.aggregator.callbacks`).
"""

from __future__ import annotations

from gateway.aggregator.requests_builder import (
    ApplicantDataInvalid,
    build_request,
    check_catalogue,
)
from gateway.aggregator.service import Aggregator
from gateway.core.catalogue import Catalogue, parse_catalogue
from gateway.xml.schema import TypeCatalog, type_catalog

__all__ = [
    "Aggregator",
    "ApplicantDataInvalid",
    "build_request",
    "check_catalogue",
    "load_catalogue",
]


def load_catalogue(
    text: str, *, types: TypeCatalog | None = None, source: str = "services.toml"
) -> Catalogue:
    """Parse the catalogue TOML and check every mapping against the XSDs."""
    catalog = types if types is not None else type_catalog()
    catalogue = parse_catalogue(text, known_types=catalog.namespaces, source=source)
    check_catalogue(catalogue, types=catalog)
    return catalogue
