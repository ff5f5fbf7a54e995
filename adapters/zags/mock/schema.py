"""The registry's WSDL and XSD: where they live, compiled once, served with our address.

``xsd/agencies/zags/`` holds the WSDL (placeholder ``soap:address``) and the XSD it
imports by relative ``schemaLocation``; zeep loads that pair from the local files. Served
as ``/zags?wsdl``, the WSDL is made self-contained: its endpoint is ``{base}/zags`` and
the XSD is inlined in ``wsdl:types`` instead of imported, so a client with external
references forbidden (zeep's ``forbid_external``) needs that one document. The XSD is
also served alone at ``/zags?xsd=zags-registry-1.0.xsd``.
"""

from __future__ import annotations

import functools
from pathlib import Path

from lxml import etree

NAMESPACE = "urn://zags.example/registry/1.0"
WSDL_FILE = "zags-registry-1.0.wsdl"
XSD_FILE = "zags-registry-1.0.xsd"
ENDPOINT_PATH = "/zags"

WSDL_NS = "http://schemas.xmlsoap.org/wsdl/"
WSDL_SOAP_NS = "http://schemas.xmlsoap.org/wsdl/soap/"


def schema_dir() -> Path:
    """``xsd/agencies/zags`` of this checkout."""
    return Path(__file__).resolve().parents[3] / "xsd" / "agencies" / "zags"


def wsdl_path() -> Path:
    return schema_dir() / WSDL_FILE


def xsd_path() -> Path:
    return schema_dir() / XSD_FILE


def _parser() -> etree.XMLParser:
    return etree.XMLParser(no_network=True, load_dtd=False, resolve_entities=False)


@functools.cache
def compiled_schema() -> etree.XMLSchema:
    """The registry XSD compiled with a parser that never touches the network."""
    return etree.XMLSchema(etree.parse(str(xsd_path()), _parser()))


@functools.lru_cache(maxsize=16)
def served_wsdl(base_url: str) -> bytes:
    """The WSDL with its endpoint at ``{base_url}/zags`` and the XSD inlined."""
    wsdl = etree.parse(str(wsdl_path()), _parser()).getroot()
    address = wsdl.find(f".//{{{WSDL_SOAP_NS}}}address")
    types = wsdl.find(f"{{{WSDL_NS}}}types")
    if address is None or types is None:
        raise RuntimeError(f"{wsdl_path()} has no soap:address or wsdl:types")
    address.set("location", f"{base_url}{ENDPOINT_PATH}")
    for child in list(types):
        types.remove(child)
    types.append(etree.parse(str(xsd_path()), _parser()).getroot())
    return etree.tostring(wsdl, xml_declaration=True, encoding="UTF-8")


def served_xsd(name: str) -> bytes | None:
    """The registry XSD if ``name`` is its file name (the only schema served), else None."""
    return xsd_path().read_bytes() if name == XSD_FILE else None
